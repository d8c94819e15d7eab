"""Checks a lit run directory with TensorBoard's own reader.

usage: python3 scripts/check_tensorboard.py RUN_DIR [TAG ...]

Loads the events file(s) in RUN_DIR with tensorboard's EventAccumulator, prints the scalar tags
and fails unless every TAG given is among them and the hyperparameters were recorded.
"""
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> int:
    run_dir, wanted = sys.argv[1], sys.argv[2:]
    acc = EventAccumulator(run_dir)
    acc.Reload()
    tags = acc.Tags()
    scalars = sorted(tags.get("scalars", []))
    print("scalar tags:", ", ".join(scalars))
    missing = [t for t in wanted if t not in scalars]
    if missing:
        print("FAIL: missing scalar tags:", ", ".join(missing))
        return 1
    for tag in scalars:
        events = acc.Scalars(tag)
        if not events:
            print(f"FAIL: no values for {tag}")
            return 1
    plugins = acc.PluginTagToContent("hparams")
    if "_hparams_/session_start_info" not in plugins:
        print("FAIL: no hyperparameters (hparams plugin) in the events file")
        return 1
    print(f"ok: {len(scalars)} scalar tags, hyperparameters recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
