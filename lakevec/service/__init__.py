"""``lakevec serve``: the retrieval service over HTTP (FastAPI + uvicorn).

HTTP only: ranking is :mod:`lakevec.retrieval`, replay is :mod:`lakevec.replay`.
Modules: ``settings`` (ServerSettings, bind rules, limits), ``schemas``
(request/response models), ``live`` (the live snapshot and its background
hot swap), ``metrics``, ``middleware`` (auth, JSON, body cap), ``app``
(create_app), ``run`` (serve, app_from_env) and ``client`` (ServiceClient).
"""
