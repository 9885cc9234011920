"""The training library: models and, later, loaders, objectives and runners."""
