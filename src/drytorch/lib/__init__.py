"""The training library: models, loaders, objectives, runners and the trainer."""
