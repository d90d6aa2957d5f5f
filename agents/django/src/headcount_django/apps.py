from django.apps import AppConfig


class HeadcountConfig(AppConfig):
    name = "headcount_django"
    label = "headcount_django"
    verbose_name = "headcount agent"

    def ready(self) -> None:
        from . import conf, reporting, sessions

        settings = conf.get()  # raises ImproperlyConfigured early on a bad setting
        if settings.enabled:
            sessions.store_class()  # likewise for a session engine without a table
        reporting.connect()
        if conf.is_lino_site():
            from . import lino_support

            lino_support.install()
