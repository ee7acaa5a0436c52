"""A directory sync run: its phase, resume cursor, progress counts and error."""

from __future__ import annotations

from django.db import models

from accounts.scoping import AccountManager, AccountScoped


class SyncRun(AccountScoped):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"  # also: interrupted, resumed by the next run
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        ABORTED = "aborted", "Aborted by the circuit breaker"

    directory = models.ForeignKey(
        "accounts.Directory", on_delete=models.CASCADE, related_name="sync_runs"
    )
    generation = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    phase = models.CharField(max_length=20, default="users")
    cursor = models.JSONField(default=dict, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = AccountManager["SyncRun"]()

    class Meta:
        indexes = [models.Index(fields=["directory", "-started_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["directory", "generation"], name="sync_run_generation_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"sync {self.generation} of {self.directory_id}: {self.status}"

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
