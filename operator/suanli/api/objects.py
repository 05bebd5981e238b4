"""Whole objects (apiVersion, kind, metadata, spec, status) of every kind."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from suanli.api import center as center_api
from suanli.api import common
from suanli.api import job as job_api
from suanli.api import queue as queue_api
from suanli.api import status as status_api


class ComputeCenter(common.Model):
    """A compute center and its accelerator pools (cluster-scoped, short name cc)."""

    api_version: Literal["suanli.io/v1alpha1"] = "suanli.io/v1alpha1"
    kind: Literal["ComputeCenter"] = "ComputeCenter"
    metadata: common.ObjectMeta = Field(default_factory=common.ObjectMeta)
    spec: center_api.ComputeCenterSpec
    status: status_api.ComputeCenterStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


class ComputeJob(common.Model):
    """An accelerator job placed by Suanli (namespaced, short name cj)."""

    api_version: Literal["suanli.io/v1alpha1"] = "suanli.io/v1alpha1"
    kind: Literal["ComputeJob"] = "ComputeJob"
    metadata: common.ObjectMeta = Field(default_factory=common.ObjectMeta)
    spec: job_api.ComputeJobSpec
    status: status_api.ComputeJobStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name): the one way jobs are keyed everywhere."""
        return (self.namespace, self.name)


class ComputeQueue(common.Model):
    """A tenant: quota, cohort, fair-share weight, preemption (cluster-scoped, short name cq)."""

    api_version: Literal["suanli.io/v1alpha1"] = "suanli.io/v1alpha1"
    kind: Literal["ComputeQueue"] = "ComputeQueue"
    metadata: common.ObjectMeta = Field(default_factory=common.ObjectMeta)
    spec: queue_api.ComputeQueueSpec = Field(default_factory=queue_api.ComputeQueueSpec)
    status: status_api.ComputeQueueStatus | None = None

    @property
    def name(self) -> str:
        return self.metadata.name
