"""Durable background work: a job queue in the database, carried out by ``simkeep worker``."""
