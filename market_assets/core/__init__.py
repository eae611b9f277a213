"""The pure core: providers, schemas, transforms, rules and stores. Never imports dagster."""
