"""Run the whole portal: daphne (HTTP + websockets), a Celery worker and Celery beat.

One command for `make run`. Children share the process group's lifetime: Ctrl-C (SIGINT) or
SIGTERM stops all three, and if one dies the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from firezone_site.webserver import DAPHNE_OPTIONS


class Command(BaseCommand):
    help = "Serve HTTP + websockets through daphne together with a Celery worker and beat."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true")
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="take the client address from X-Forwarded-For (only behind a reverse proxy that "
            "overwrites it; docs/deploy.md)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        py = sys.executable
        var = str(settings.VAR_DIR)
        commands: dict[str, list[str]] = {
            "web": [
                py,
                "-m",
                "firezone_site.webserver",  # daphne, closing oversized frames with 1009
                "-b",
                options["host"],
                "-p",
                str(options["port"]),
                *DAPHNE_OPTIONS,
                *(["--proxy-headers"] if options["proxy_headers"] else []),
                "firezone_site.asgi:application",
            ],
        }
        if not options["no_worker"]:
            commands["worker"] = [
                py,
                "-m",
                "celery",
                "-A",
                "firezone_site",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
            ]
            commands["beat"] = [
                py,
                "-m",
                "celery",
                "-A",
                "firezone_site",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                os.path.join(var, "celerybeat-schedule"),
            ]
        self.stdout.write(
            f"Serving http://{options['host']}:{options['port']}/ "
            f"({'embedded: SQLite + filesystem broker' if settings.FZ_EMBEDDED else 'production'})"
            " - Ctrl-C stops everything."
        )
        children = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with {child.returncode}; stopping.")
                        stopping = True
                        break
                time.sleep(0.2)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for child in children.values():
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        self.stdout.write("Stopped.")
