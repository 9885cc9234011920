"""Built-in storage-backend plugins: where checkpoints are kept."""
