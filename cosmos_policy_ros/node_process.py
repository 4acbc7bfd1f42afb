"""``policy_node`` as a child process: started from the sourced workspace's launcher with a
parameter file and overrides, its output in a log file, stopped with SIGINT (then killed if it
does not end). Used by the closed-loop harness and the demo, which talk to it over topics.

A core module: stdlib only (the launcher is found through the ament index).
"""
import os
import signal
import subprocess

from cosmos_policy_ros.package_files import policy_node_executable

STOP_TIMEOUT_S = 30.0  # wall seconds a SIGINT-ed node gets before it is killed


class PolicyProcess:
    """policy_node --params-file `config` -p model_path:=`model` (use_sim_time), its stdout
    and stderr in `log`; `overrides` are more NAME:=VALUE parameters."""

    def __init__(self, model, config, log, *, overrides=(), env=None):
        self.log = open(log, 'w')
        args = [str(policy_node_executable()), '--ros-args', '--params-file', str(config),
                '-p', f'model_path:={model}', '-p', 'use_sim_time:=true']
        for override in overrides:
            args += ['-p', override]
        self.process = subprocess.Popen(args, env=env or dict(os.environ), stdout=self.log,
                                        stderr=subprocess.STDOUT, text=True)

    @property
    def returncode(self):
        return self.process.poll()

    def check(self):
        """Raise RuntimeError naming the log when the node has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f'policy_node exited with code {self.process.returncode}; see '
                               f'{self.log.name}')

    def close(self):
        """SIGINT, wait, kill if needed; close the log. Safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
