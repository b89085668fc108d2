"""``openanomaly api``: the Django service of the control plane, stateless.

``settings`` turns AppConfig into Django's settings (sessions in signed cookies, no
database of Django's own: pipelines and users live in the store); ``api`` is the REST API
(django-ninja, OpenAPI at /api/openapi.json); ``auth`` signs users in by session or by
bearer token and checks their role; ``urls`` and ``server`` put it on HTTP.
"""
