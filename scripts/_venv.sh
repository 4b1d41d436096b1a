# Sourced by scripts/start and scripts/test: make .venv and install simkeep into it.
# Usage: install_simkeep [EXTRAS]
install_simkeep() {
  local extras="${1:-}"
  local python="${PYTHON:-python3}"
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  if [ -n "$extras" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
  else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
  fi
}
