"""The GLM network and how it lies on devices: the Flax model, its attention mask and backends
(the Pallas TPU kernel), int8 weights, the mesh builder and logical-axis rules, and the model
shape read back from params."""
