"""A tiny sandbox image built from scratch: busybox-static imported into the Docker engine."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

BUSYBOX_TAG = "orchestrator-busybox:test"
_PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"


def _busybox_binary() -> Path:
    found = shutil.which("busybox")
    candidates = [Path("/bin/busybox"), Path("/usr/bin/busybox")]
    if found:
        candidates.insert(0, Path(found))
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError("busybox not found: install it with `apt-get install busybox-static`")


def _rootfs_tar(busybox: Path) -> bytes:
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "root", "tmp", "etc", "workspace", "home"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        passwd = tarfile.TarInfo("etc/passwd")
        passwd.size = len(_PASSWD)
        tar.addfile(passwd, io.BytesIO(_PASSWD))
    return buffer.getvalue()


def ensure_busybox_image(client: Any, tag: str = BUSYBOX_TAG) -> str:
    """Import the busybox image unless the engine already has it; returns the tag."""
    import docker

    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    repository, _, version = tag.partition(":")
    client.api.import_image_from_data(
        _rootfs_tar(_busybox_binary()),
        repository=repository,
        tag=version or "latest",
        changes=["ENV PATH=/bin", 'CMD ["sleep", "2147483647"]'],
    )
    return tag
