"""Sandbox backends behind one interface."""
