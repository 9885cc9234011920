"""The core: experiments and runs, scope, registry, plugin host, settings, events."""
