"""The record schema check shared by the pipeline and Ray tests."""

import json

import jsonschema

from saliency_core import pipeline


def validate_record(record: dict) -> None:
    """Raise if ``record`` does not follow the schema it names (1 or 2; written now: 2)."""
    version = record.get("schema") if isinstance(record, dict) else None
    schema = json.loads(pipeline.SCHEMA_FILES.get(version, pipeline.SCHEMA_FILE).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(record, schema, cls=jsonschema.Draft202012Validator)
