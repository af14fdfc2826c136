#!/usr/bin/env bash
# The GPU machine's figures that go next to every GPU number: GPU, driver, memory, Python,
# torch, CUDA and cuDNN versions, CPU cores.
PY=${PYTHON:-python3}
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version(),
'| GPU', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
    echo "CPU cores: $(getconf _NPROCESSORS_ONLN)"
} 2>&1
