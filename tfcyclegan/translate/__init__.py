"""Translating images with trained or exported generators: models.py loads them (SavedModel,
TFLite, workdir), files.py runs files and chains through them. The command is tfcyclegan.cli.translate.
"""
