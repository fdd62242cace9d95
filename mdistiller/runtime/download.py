"""Downloading one file over HTTP(S) with the standard library, resumable.

The bytes go to `<dest>.part`; a later call with the same destination asks the server for the
rest only (an HTTP Range request) instead of starting over, and the finished file is renamed to
`dest`. A server that ignores Range (answers 200) gets a fresh start. Any network failure is one
`DownloadError` line that names the URL, so the user can fetch the file by hand.
"""
import http.client
import os
import re
import sys
import urllib.error
import urllib.request

from tqdm import tqdm

from ..errors import DownloadError

CHUNK = 1 << 16
TIMEOUT_S = 60


def download(url, dest, progress=True, hint=""):
    """Fetch `url` into `dest` (resuming `<dest>.part`); returns `dest`. `hint` is appended to the
    one-line error (e.g. how to use a file fetched by hand)."""
    part = dest + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(dest)) or ".", exist_ok=True)
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    try:
        total = _fetch(url, part, have, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        reason = getattr(err, "reason", None) or err
        kept = os.path.getsize(part) if os.path.isfile(part) else 0
        resume = f"; rerun to resume from byte {kept}" if kept else ""
        raise DownloadError(f"could not download {url} ({_one_line(reason)}){resume}; or fetch it by hand{hint}") from None
    got = os.path.getsize(part)
    if total is not None and got != total:
        raise DownloadError(f"download of {url} stopped at {got} of {total} bytes; rerun to resume from there, "
                            f"or fetch it by hand{hint}")
    os.replace(part, dest)
    return dest


def _fetch(url, part, have, progress):
    """Append the missing bytes to `part`; the expected full size, or None when the server does not say."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have and _complete_size(err.headers) == have:
            return have  # the part file already holds everything
        raise
    with response:
        if have and response.status != 206:
            have = 0  # the server sends the whole file: start the part over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if have else "wb") as out, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=os.path.basename(url),
                     disable=not progress, file=sys.stderr) as bar:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                bar.update(len(chunk))
    return total


def _complete_size(headers):
    found = re.match(r"bytes \*/(\d+)", headers.get("Content-Range", "") or "")
    return int(found.group(1)) if found else None


def _one_line(reason):
    text = str(reason).strip().splitlines()
    return text[0][:200] if text else type(reason).__name__
