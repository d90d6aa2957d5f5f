from django.core.management.base import BaseCommand, CommandError

from headcount_django import client, conf, config, sessions, shared


class Command(BaseCommand):
    help = "Check the headcount agent: settings, the session store, and that headcount answers with this site's config."

    def handle(self, *args, **options):
        settings = conf.get()
        self.stdout.write(f"site: {settings.site}  headcount: {settings.url}  mode: {settings.mode}")
        if not settings.enabled:
            self.stdout.write(self.style.WARNING("the agent is disabled (HEADCOUNT['ENABLED'] is False)"))
            return
        local = sum(1 for _ in sessions.authenticated_sessions())
        self.stdout.write(f"signed-in sessions in the session table: {local}")
        cache_problem = shared.check()
        if cache_problem is None:
            self.stdout.write(f"shared cache {settings.cache_alias!r}: works")
        try:
            response = client.get_config(None)
        except (client.HeadcountUnavailable, client.HeadcountError) as exc:
            raise CommandError(f"headcount did not give this site's config: {exc}") from None
        body = response.body or {}
        try:
            config.apply(body, response.headers.get("etag"))
        except config.NotStored as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"headcount config version {body.get('config_version')}: session_limit {body.get('session_limit')}, "
            f"count_mode {body.get('count_mode')}, over_limit {body.get('over_limit')}"
        )
        self.stdout.write(self.style.SUCCESS("headcount answered; the token and the site slug are right."))
        if cache_problem is not None:
            # sign-ins and pushes still work, but each worker process then keeps its own config
            raise CommandError(cache_problem)
