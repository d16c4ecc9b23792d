"""The user's own model code for examples/custom_model/digits_custom.yaml."""
