"""Where bytes go: local or gs:// paths, outputs that never overwrite what a user owns,
params-only checkpoints, one-line messages for failed reads and writes, the compilation cache."""
