"""The environment variables queuectl reads, in a module that imports nothing: the CLI names
them in its options and help without loading the engine (peewee, the database drivers)."""

DB_ENV_VAR = "QUEUECTL_DB"
