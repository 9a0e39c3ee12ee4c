"""Pipelines: runs of several trainings with steps between them (autoStructN2V: stage 1, mask
extraction, review, stage 2). A pipeline drives methods; it is not one."""
