"""Tests of lines: the phone numbers, their holders, and their migration from a previous system."""
