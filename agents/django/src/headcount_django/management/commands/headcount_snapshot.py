from django.core.management.base import BaseCommand, CommandError

from headcount_django import client, conf, snapshot


class Command(BaseCommand):
    help = (
        "Send headcount a full snapshot of this site's signed-in sessions; sessions headcount "
        "believes active but the site no longer has end as 'reconciled'."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="print the snapshot instead of sending it")

    def handle(self, *args, dry_run=False, **options):
        settings = conf.get()
        if not settings.enabled:
            raise CommandError("the headcount agent is disabled (HEADCOUNT['ENABLED'] is False)")
        if dry_run:
            import json

            self.stdout.write(json.dumps(snapshot.build(), indent=2))
            return
        try:
            answer = snapshot.send()
        except (client.HeadcountUnavailable, client.HeadcountError) as exc:
            raise CommandError(f"snapshot not sent: {exc}") from None
        summary = ", ".join(f"{k}: {v}" for k, v in (answer or {}).items() if not isinstance(v, (list, dict)))
        self.stdout.write(self.style.SUCCESS(f"snapshot sent to headcount for site {settings.site}. {summary}".rstrip(". ")))
