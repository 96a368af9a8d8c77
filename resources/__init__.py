"""Dagster resources: one ConfigurableResource per external system, and one bundle per environment."""

from resources.llm import GeneratorResource
from resources.object_store import ObjectStoreResource
from resources.registry import ModelRegistryResource
from resources.settings import EvaluationResource, TrainerResource

__all__ = ["ObjectStoreResource", "GeneratorResource", "ModelRegistryResource", "TrainerResource", "EvaluationResource"]
