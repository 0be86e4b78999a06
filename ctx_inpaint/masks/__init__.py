"""Masks: the hole generators the model trains on (centre, random patches, random regions, free-form) and named mask sets."""
