#!/usr/bin/env bash
# Install Dedalus 3.0.5 (the solver behind the `heated_convection_ball` PDE dataset).
#
# Dedalus 3.0.5 ships as a source distribution only, so pip compiles it against system MPI and FFTW.
# This script
#   1. installs the system packages libfftw3-dev libfftw3-mpi-dev libopenmpi-dev openmpi-bin (apt-get;
#      uses sudo when not run as root),
#   2. exports MPI_INCLUDE_PATH / MPI_LIBRARY_PATH / FFTW_INCLUDE_PATH / FFTW_LIBRARY_PATH for the
#      machine's multiarch directory (x86_64-linux-gnu, aarch64-linux-gnu, ...),
#   3. runs `$PIP install "dedalus==3.0.5"` (building takes about 1.5 minutes), or, when called with an
#      argument, `$PIP install -e "<argument>[ball]"` (e.g. `bash scripts/install_dedalus.sh .`).
#
# Usage:
#   bash scripts/install_dedalus.sh                 # pip install "dedalus==3.0.5"
#   bash scripts/install_dedalus.sh .               # pip install -e ".[ball]" (enf + dedalus + mpi4py)
#   PIP=/path/to/venv/bin/pip bash scripts/install_dedalus.sh   # pip command (default: pip on PATH)
#   PYTHON=...                                     # python used for the final import check
#   SKIP_APT=1 bash scripts/install_dedalus.sh      # system packages already present
#
# Dedalus is GPL-3 licensed; it is an optional dependency of enf and only needed to generate ball data.
# At run time set OMP_NUM_THREADS=1 (Dedalus is parallelised with MPI, not threads).
set -euo pipefail

PIP="${PIP:-pip}"
APT_PACKAGES=(libfftw3-dev libfftw3-mpi-dev libopenmpi-dev openmpi-bin)

say() { printf '[install_dedalus] %s\n' "$*"; }
die() { printf '[install_dedalus] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. system packages -------------------------------------------------------------------------
if [[ "${SKIP_APT:-0}" == "1" ]]; then
    say "SKIP_APT=1: not installing system packages (${APT_PACKAGES[*]})"
else
    command -v apt-get >/dev/null 2>&1 \
        || die "apt-get not found; install MPI and FFTW (with MPI support) development files yourself, then rerun with SKIP_APT=1"
    SUDO=""
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "not root and sudo is not available; cannot install ${APT_PACKAGES[*]}"
        SUDO="sudo"
    fi
    say "apt-get update"
    $SUDO apt-get update
    say "apt-get install ${APT_PACKAGES[*]}"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
fi

# --- 2. build environment -----------------------------------------------------------------------
MULTIARCH=""
if command -v dpkg-architecture >/dev/null 2>&1; then
    MULTIARCH="$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || true)"
fi
if [[ -z "$MULTIARCH" ]] && command -v gcc >/dev/null 2>&1; then
    MULTIARCH="$(gcc -print-multiarch 2>/dev/null || true)"
fi
if [[ -z "$MULTIARCH" ]]; then
    MULTIARCH="$(uname -m)-linux-gnu"
fi
LIBDIR="/usr/lib/${MULTIARCH}"

export MPI_INCLUDE_PATH="${MPI_INCLUDE_PATH:-${LIBDIR}/openmpi/include}"
export MPI_LIBRARY_PATH="${MPI_LIBRARY_PATH:-${LIBDIR}/openmpi/lib}"
export FFTW_INCLUDE_PATH="${FFTW_INCLUDE_PATH:-/usr/include}"
export FFTW_LIBRARY_PATH="${FFTW_LIBRARY_PATH:-${LIBDIR}}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

[[ -f "${MPI_INCLUDE_PATH}/mpi.h" ]] || die "mpi.h not found in ${MPI_INCLUDE_PATH} (is libopenmpi-dev installed? set MPI_INCLUDE_PATH)"
[[ -f "${FFTW_INCLUDE_PATH}/fftw3-mpi.h" ]] || die "fftw3-mpi.h not found in ${FFTW_INCLUDE_PATH} (is libfftw3-mpi-dev installed? set FFTW_INCLUDE_PATH)"
say "MPI_INCLUDE_PATH=${MPI_INCLUDE_PATH}"
say "MPI_LIBRARY_PATH=${MPI_LIBRARY_PATH}"
say "FFTW_INCLUDE_PATH=${FFTW_INCLUDE_PATH}"
say "FFTW_LIBRARY_PATH=${FFTW_LIBRARY_PATH}"

# --- 3. pip -------------------------------------------------------------------------------------
if [[ $# -ge 1 ]]; then
    say "${PIP} install -e \"$1[ball]\" (compiles dedalus from source, about 1.5 minutes)"
    $PIP install -e "$1[ball]"
else
    say "${PIP} install \"dedalus==3.0.5\" (compiles from source, about 1.5 minutes)"
    $PIP install "dedalus==3.0.5"
fi

say "checking the installation"
if [[ -z "${PYTHON:-}" ]]; then  # the python next to pip (a venv's bin/), else the one on PATH
    PYTHON="$(dirname "$(command -v "${PIP%% *}" 2>/dev/null || echo pip)")/python"
    [[ -x "$PYTHON" ]] || PYTHON=python
fi
OMP_NUM_THREADS=1 "$PYTHON" -c "import dedalus.public as d3; import dedalus; print('[install_dedalus] dedalus', dedalus.__version__, 'OK')" \
    || die "dedalus installed but does not import"
say "done. Generate ball data with: OMP_NUM_THREADS=1 enf data generate heated_convection_ball --preset small"
