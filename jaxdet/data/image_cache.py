"""Decoded-image caches of :class:`~jaxdet.data.records.DetectionSource`: decode each image file once.

An image is decoded and brought to the training size (letterboxed or stretched, uint8 ``[H, W, 3]``) once, then
served from one of these stores (``DetectionSource(cache=...)``, ``data.cache`` of ``python -m train``):

* ``"none"``: :class:`RecentImages` only, the most recently used images (like ultralytics' mosaic buffer). With
  mosaic partners drawn from the example's own stretch of the stream
  (:class:`~jaxdet.data.yolo_augment.YoloAugment`'s ``partner_window``), one output image costs about one decode.
* ``"ram"``: :class:`SharedImageCache`, every image in one ``[N, H, W, 3]`` array in shared memory (a file in
  ``/dev/shm``), so grain's worker processes read and fill the same copy instead of one each. Its size is
  checked against the available memory before anything is stored (:func:`check_fits`).
* ``"disk"``: :class:`DiskImageCache`, one ``.npy`` file an image under a folder you choose, named by the image
  path, size and modification time and the training size, so a changed image or size is decoded afresh.

The stores hold pixels only; boxes and letterbox geometry come from the records. Threads may use a store at once
(grain's reader threads): an image decoded twice at the same time is the same image.
"""

from __future__ import annotations

import collections
import hashlib
import os
import tempfile
import threading
import uuid
import weakref

import numpy as np

__all__ = ["CACHE_MODES", "RecentImages", "SharedImageCache", "DiskImageCache", "check_fits", "available_memory"]

#: ``DetectionSource(cache=...)`` / ``data.cache`` values.
CACHE_MODES = ("none", "ram", "disk")

_GIB = 1024**3


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable`` of ``/proc/meminfo``, else free pages)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(nbytes: int, *, what: str, fraction: float = 0.8) -> None:
    """Raise unless ``nbytes`` fit in ``fraction`` of the available memory.

    Raises:
      MemoryError: saying what needs how many GiB and how many are available.
    """
    free = available_memory()
    if nbytes > fraction * free:
        raise MemoryError(
            f"{what} needs {nbytes / _GIB:.2f} GiB but only {free / _GIB:.2f} GiB of memory are available "
            f"(at most {fraction:.0%} of it is used for a cache); use cache='disk' or cache='none'"
        )


class RecentImages:
    """The ``capacity`` most recently used images, by index (least recently used ones evicted)."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._items: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, index: int) -> np.ndarray | None:
        with self._lock:
            image = self._items.get(index)
            if image is not None:
                self._items.move_to_end(index)
            return image

    def put(self, index: int, image: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[index] = image
            self._items.move_to_end(index)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __getstate__(self):  # a worker process starts with an empty buffer of its own
        return {"capacity": self.capacity}

    def __setstate__(self, state):
        self.__init__(state["capacity"])


def _shm_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


class SharedImageCache:
    """``n`` images of one shape in a shared-memory array, with a flag per image saying it is stored.

    The owner (the process that made it) removes the backing file when it is garbage collected or exits; a copy
    unpickled in a worker process maps the same file.

    Args:
      n: number of images.
      shape: ``(H, W, 3)`` of every image.

    Raises:
      MemoryError: when ``n`` images of ``shape``, with what this process's other shared caches have still to
        fill (their files are sparse), would not fit (:func:`check_fits`), before anything is stored.
    """

    def __init__(self, n: int, shape: tuple[int, int, int]):
        self.n, self.shape = int(n), tuple(int(s) for s in shape)
        promised = sum(c.unfilled_bytes for c in list(_OWNED))  # not yet taken from the available memory
        what = f"cache='ram' for {self.n} images of {self.shape[1]}x{self.shape[0]} px"
        if promised:
            what += f" (with the {promised / _GIB:.2f} GiB still to fill of this process's other RAM caches)"
        check_fits(self.nbytes + promised, what=what)
        self.path = os.path.join(_shm_dir(), f"jaxdet-images-{os.getpid()}-{uuid.uuid4().hex}")
        with open(self.path, "wb") as fh:
            fh.truncate(self.n + self.nbytes)  # sparse: memory is taken as images are stored
        self._finalizer = weakref.finalize(self, _remove, self.path)
        self._map()
        _OWNED.add(self)

    @property
    def nbytes(self) -> int:
        """Bytes of the pixels of all ``n`` images."""
        return self.n * int(np.prod(self.shape))

    def _map(self) -> None:
        self._flags = np.memmap(self.path, np.uint8, mode="r+", shape=(self.n,))
        self._images = np.memmap(self.path, np.uint8, mode="r+", offset=self.n, shape=(self.n,) + self.shape)

    def get(self, index: int) -> np.ndarray | None:
        if not self._flags[index]:
            return None
        image = np.asarray(self._images[index])  # a read-only view of the shared pixels
        image.flags.writeable = False
        return image

    def put(self, index: int, image: np.ndarray) -> None:
        self._images[index] = image
        self._flags[index] = 1  # after the pixels: a reader that sees the flag sees the image

    @property
    def filled(self) -> int:
        """The number of images stored."""
        return int(np.count_nonzero(self._flags))

    @property
    def unfilled_bytes(self) -> int:
        """Bytes of the images not stored yet: memory the sparse file will still take."""
        return (self.n - self.filled) * int(np.prod(self.shape))

    def __getstate__(self):
        return {"n": self.n, "shape": self.shape, "path": self.path}

    def __setstate__(self, state):
        self.n, self.shape, self.path = state["n"], state["shape"], state["path"]
        self._finalizer = None  # the owner removes the file
        self._map()


#: the shared caches this process made (a worker's unpickled copies are not in it).
_OWNED: "weakref.WeakSet[SharedImageCache]" = weakref.WeakSet()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class DiskImageCache:
    """One ``.npy`` file an image under ``folder``.

    A file's name holds the image's stem and a digest of its absolute path, byte size, modification time and the
    training ``size`` / ``resize`` mode; a file written by another version of the image or size is not found
    (and stays until you remove it). Files are written whole (a temporary file renamed), so an interrupted run
    leaves no partial image.

    Args:
      folder: where the files go (made if missing).
      size: ``(H, W)`` the images are brought to.
      resize: the :class:`~jaxdet.data.records.DetectionSource` resize mode.
    """

    def __init__(self, folder, size, resize: str):
        self.folder = os.fspath(folder)
        self.key = f"{int(size[0])}x{int(size[1])}-{resize}"
        os.makedirs(self.folder, exist_ok=True)

    def file_of(self, image_path) -> str:
        """The cache file of ``image_path``."""
        path = os.path.abspath(os.fspath(image_path))
        st = os.stat(path)
        digest = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}|{self.key}".encode()).hexdigest()[:16]
        stem = os.path.splitext(os.path.basename(path))[0]
        return os.path.join(self.folder, f"{stem}-{digest}.npy")

    def get(self, image_path) -> np.ndarray | None:
        try:
            return np.load(self.file_of(image_path))
        except (FileNotFoundError, ValueError, OSError):  # missing, or unreadable: decoded and written again
            return None

    def put(self, image_path, image: np.ndarray) -> None:
        target = self.file_of(image_path)
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, image)
        os.replace(tmp, target)
