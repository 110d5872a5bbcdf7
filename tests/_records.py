"""The record schema check shared by the pipeline and Ray tests."""

import json

import jsonschema

from saliency_core import pipeline


def validate_record(record: dict) -> None:
    """Raise if ``record`` does not follow schema 1."""
    schema = json.loads(pipeline.SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(record, schema, cls=jsonschema.Draft202012Validator)
