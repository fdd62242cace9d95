"""Download mdistiller's CIFAR-100 teacher checkpoints and install them into download_ckpts/.

    python tools/fetch_teachers.py                         # the official cifar_teachers.tar
    python tools/fetch_teachers.py --url https://mirror.example/cifar_teachers.tar
    python tools/fetch_teachers.py --file ~/Downloads/cifar_teachers.tar

A cut download resumes where it stopped on the next call. The archive is checked before anything
is installed (mdistiller/models/teacher_archive.py); an existing teacher file is kept unless
--overwrite. ImageNet teachers need no archive (torchvision's IMAGENET1K_V1 weights, downloaded by
torchvision on first use); mdistiller publishes no Tiny-ImageNet teacher archive.
"""
import os
import sys

from ..errors import UserError
from . import new_parser


def parse_args(argv=None):
    from ..models.teacher_archive import CIFAR_TEACHERS_URL, DEFAULT_DEST

    parser = new_parser("fetch_teachers", __doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--url", default=CIFAR_TEACHERS_URL, help=f"where to download from (default {CIFAR_TEACHERS_URL})")
    source.add_argument("--file", default="", help="a cifar_teachers.tar fetched by hand (no download)")
    parser.add_argument("--dest", default=DEFAULT_DEST,
                        help=f"folder to install into (default {DEFAULT_DEST}/, relative to where you train)")
    parser.add_argument("--overwrite", action="store_true", help="replace teacher files that already exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def fetch(args):
    """Install from --file, or download --url into <dest>/ first (resumable); returns Installed."""
    from ..models.teacher_archive import install_archive
    from ..runtime.download import download

    if args.file:
        if not os.path.isfile(args.file):
            raise UserError(f"--file {args.file} does not exist; pass the path of the downloaded cifar_teachers.tar")
        return install_archive(args.file, args.dest, args.overwrite)
    archive = os.path.join(args.dest, os.path.basename(args.url.split("?")[0]) or "cifar_teachers.tar")
    download(args.url, archive, progress=not args.quiet,
             hint=" and pass it with --file PATH")
    try:
        return install_archive(archive, args.dest, args.overwrite)
    finally:
        os.remove(archive)  # ours: the teachers are installed, or the archive was refused


def report(result, dest):
    from ..models.teacher_archive import DEFAULT_DEST, headline_command

    for arch, path in result.installed:
        print(f"installed {arch} teacher: {path}")
    for arch, path in result.kept:
        print(f"kept existing {arch} teacher: {path} (pass --overwrite to replace it)")
    command = headline_command([arch for arch, _ in result.installed + result.kept])
    if command and os.path.basename(os.path.abspath(dest)) == DEFAULT_DEST:
        # configs name the teachers relative to the working directory: download_ckpts/...
        print(f"now works, from {os.path.dirname(os.path.abspath(dest))}: {command}")
    elif result.installed:
        print("pass one of them to a run with DISTILLER.TEACHER_WEIGHTS PATH "
              f"(configs look in {DEFAULT_DEST}/ under the working directory)")


def main(argv=None):
    args = parse_args(argv)
    try:
        result = fetch(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report(result, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
