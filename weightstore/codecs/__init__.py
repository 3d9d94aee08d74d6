"""The built-in codecs, one module each.

Nothing here is imported until a file needs it: :data:`weightstore.registry.BUILTIN`
lists every module by name, extensions and content test, and a lookup imports only the
codec it finds. A new codec is a module here plus its line in ``BUILTIN``. Modules that
would share a name with the library they wrap or with the standard library carry a
``_codec`` suffix (``json_codec``, ``csv_codec``, ``pickle_codec``, ``safetensors_codec``).
"""
