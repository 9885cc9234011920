"""Built-in validator plugins: each implements ``validate_*`` hooks.

They load through the plugin host like third-party validators, and can be
disabled by name with the ``disable_plugins`` setting.
"""
