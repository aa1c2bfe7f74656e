"""Readers: files that describe a network (checkpoints, topologies) -> the shapes and matrices downstream."""
