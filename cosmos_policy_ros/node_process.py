"""``policy_node`` (or ``policy_server``) as a child process: started from the sourced
workspace's launcher with a parameter file and overrides, its output in a log file, stopped
with SIGINT (then killed if it does not end). Used by the closed-loop harness, the demo and
the fleet benchmark, which talk to it over topics.

A core module: stdlib only (the launcher is found through the ament index).
"""
import os
import signal
import subprocess

from cosmos_policy_ros.package_files import ros_executable

STOP_TIMEOUT_S = 30.0  # wall seconds a SIGINT-ed node gets before it is killed


class PolicyProcess:
    """`script` (policy_node, or policy_server) --params-file `config` -p model_path:=`model`
    (use_sim_time), its stdout and stderr in `log`; `overrides` are more NAME:=VALUE
    parameters, `ros_args` more ROS arguments (e.g. remaps)."""

    def __init__(self, model, config, log, *, overrides=(), env=None, script='policy_node',
                 ros_args=()):
        self.script = script
        self.log = open(log, 'w')
        args = [str(ros_executable(script)), '--ros-args', '--params-file', str(config),
                '-p', f'model_path:={model}', '-p', 'use_sim_time:=true', *ros_args]
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
            raise RuntimeError(f'{self.script} exited with code {self.process.returncode}; '
                               f'see {self.log.name}')

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
