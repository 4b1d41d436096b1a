"""Tests of identity document checks and document photo reading."""
