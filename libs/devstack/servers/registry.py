"""Debian's `docker-registry` (CNCF distribution 2.8) as a local image registry, and a pusher.

Subtle parts:
- distribution reads its whole config from `REGISTRY_...` variables as overrides, so those are
  dropped from its environment.
- Its `htpasswd` accepts only bcrypt entries; the cost is low (throwaway dev credentials)
  because the registry checks the hash on *every* request.
- `push_image` uploads a tiny, valid and unique OCI image, so every push yields a new digest.
- Debian's build exits on SIGTERM without draining connections, which is fine here.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import secrets
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from libs.devstack.servers.errors import MissingBinaryError, RegistryError, ServerError
from libs.devstack.servers.plumbing import HOST, http_request, http_status
from libs.devstack.servers.process import ServerProcess

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DockerRegistry(ServerProcess):
    """CNCF distribution 2.8 (Debian ``docker-registry``) over plain HTTP on 127.0.0.1.

    Filesystem storage under ``data_dir/storage``, deletes enabled. With ``users`` (name -> password)
    every request needs basic auth (htpasswd, bcrypt); without, access is anonymous.
    Properties: ``url`` ("http://127.0.0.1:PORT"), ``host`` ("127.0.0.1:PORT").
    """

    name = "docker-registry"
    env_drop_prefixes = ("REGISTRY_",)  # distribution reads its whole config from REGISTRY_... overrides
    realm = "landfall-registry"

    def __init__(
        self, data_dir: Path | str, port: int | None = None, users: dict[str, str] | None = None
    ) -> None:
        super().__init__(data_dir, port)
        self.users = dict(users or {})
        self.config_path = self.data_dir / "config.yml"
        self.htpasswd_path = self.data_dir / "htpasswd"
        self.storage_dir = self.data_dir / "storage"

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def push_image(
        self, repository: str, tag: str, *, username: str | None = None, password: str | None = None
    ) -> str:
        """Upload a tiny, valid, unique OCI image as ``repository:tag``; return its manifest digest."""
        headers: dict[str, str] = {}
        if username is not None:
            credentials = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {credentials}"

        layer_tar = io.BytesIO()
        with tarfile.open(fileobj=layer_tar, mode="w") as archive:
            content = f"landfall test image {repository}:{tag}\n".encode() + secrets.token_bytes(32)
            member = tarfile.TarInfo("landfall/content")
            member.size = len(content)
            member.mode = 0o644
            archive.addfile(member, io.BytesIO(content))
        layer = gzip.compress(layer_tar.getvalue(), mtime=0)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"org.landfall.test": f"{repository}:{tag}"}},
                "rootfs": {"type": "layers", "diff_ids": [_sha256(layer_tar.getvalue())]},
            },
            sort_keys=True,
        ).encode()
        for blob in (config, layer):
            self._upload_blob(repository, blob, headers)

        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": _sha256(config), "size": len(config)},
                "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": _sha256(layer), "size": len(layer)}],
            },
            sort_keys=True,
        ).encode()
        response = http_request(
            "PUT",
            f"{self.url}/v2/{repository}/manifests/{urllib.parse.quote(tag)}",
            body=manifest,
            headers={**headers, "Content-Type": OCI_MANIFEST},
        )
        if response.status != 201:
            raise RegistryError(
                f"PUT manifest {repository}:{tag}", status=response.status, body=response.body
            )
        digest = response.headers.get("Docker-Content-Digest")
        if digest != _sha256(manifest):
            raise ServerError(
                f"registry answered digest {digest!r} for a manifest of digest {_sha256(manifest)}"
            )
        return digest

    def _upload_blob(self, repository: str, blob: bytes, headers: Mapping[str, str]) -> None:
        started = http_request(
            "POST", f"{self.url}/v2/{repository}/blobs/uploads/", body=b"", headers=headers
        )
        location = started.headers.get("Location")
        if started.status != 202 or not location:
            hint = " (pass username/password)" if started.status == 401 else ""
            raise RegistryError(
                f"start blob upload to {repository}{hint}", status=started.status, body=started.body
            )
        upload_url = urllib.parse.urljoin(self.url + "/", location)
        separator = "&" if "?" in upload_url else "?"
        digest = _sha256(blob)
        finished = http_request(
            "PUT",
            f"{upload_url}{separator}digest={urllib.parse.quote(digest)}",
            body=blob,
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        if finished.status != 201:
            raise RegistryError(f"finish blob upload {digest}", status=finished.status, body=finished.body)

    # -- internals ------------------------------------------------------------------------------

    def _find_binary(self) -> Path:
        if REGISTRY_BINARY.is_file():
            return REGISTRY_BINARY
        found = shutil.which("docker-registry")
        if found is None:
            raise MissingBinaryError(
                f"{REGISTRY_BINARY} not found; run `make deps` "
                "(which runs `apt-get install -y docker-registry`)"
            )
        return Path(found)

    def _prepare(self) -> None:
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.users:
            import bcrypt

            lines = [
                f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()}\n"
                for user, password in self.users.items()
            ]
            self.htpasswd_path.write_text("".join(lines))
            self.htpasswd_path.chmod(0o600)
            auth = (
                "auth:\n"
                "  htpasswd:\n"
                f"    realm: {json.dumps(self.realm)}\n"
                f"    path: {json.dumps(str(self.htpasswd_path))}\n"
            )
        self._write_config(
            self.config_path,
            "version: 0.1\n"
            "log:\n"
            "  level: info\n"
            "storage:\n"
            "  filesystem:\n"
            f"    rootdirectory: {json.dumps(str(self.storage_dir))}\n"
            "  delete:\n"
            "    enabled: true\n"
            "http:\n"
            f"  addr: {json.dumps(self.host)}\n"
            f"  secret: {json.dumps(secrets.token_hex(16))}\n" + auth,
        )

    def _command(self) -> list[str]:
        return [str(self.binary), "serve", str(self.config_path)]

    def _readiness(self) -> str:
        return f"GET {self.url}/v2/ answers 200 or 401"

    def _is_ready(self) -> bool:
        return http_status(f"{self.url}/v2/") in (200, 401)

    def _hint(self) -> str:
        return super()._hint() + f" Config file: {self.config_path}."
