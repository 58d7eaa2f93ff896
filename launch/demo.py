"""``make demo``: dense PGD-AT and Flying Bird+ (80% sparsity) on the embedded digits, side by
side in the paper's table layout. Rerunning resumes or reuses finished runs."""
import json
import os
import subprocess
import sys

RUNS = (("dense", "gin/quickstart.gin"), ("fb_plus", "gin/quickstart_fb_plus.gin"))


def main():
    root = os.path.join("runs", "demo")
    rows = []
    for name, gin_file in RUNS:
        workdir = os.path.join(root, name)
        print(f"== {name}: python -m launch.train --gin_file={gin_file} --workdir={workdir}",
              flush=True)
        subprocess.run([sys.executable, "-m", "launch.train", f"--gin_file={gin_file}",
                        f"--workdir={workdir}"], check=True)
        with open(os.path.join(workdir, "results.json")) as f:
            rows.append(json.load(f))
    from birds_tf.metrics import table
    print()
    print("Digits (8x8, embedded), PreActResNet-18 width 8, PGD-10 AT / PGD-20 eval, eps 0.1")
    print(table.markdown(rows))


if __name__ == "__main__":
    main()
