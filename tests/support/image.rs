//! The operator's OCI image (built by `.ci/image/build.sh`, named in `KBO_TEST_IMAGE` by
//! tests/run-all.sh) and podman, which reads its configuration and runs it. `.ci/services.sh`
//! points podman at its storage and runtime settings (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`)
//! and removes, on exit, any container labelled with its `KBO_TEST_RUN_ID` that a test left.

use std::{
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

/// The label of every container a test starts (value: `KBO_TEST_RUN_ID`).
pub const TEST_LABEL: &str = "kafka-backup-operator-test";

/// Runs `podman args`; its stdout, failing the test with stderr when podman fails.
pub fn podman(args: &[&str]) -> String {
    let output = podman_output(args);
    assert!(
        output.status.success(),
        "podman {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `podman args` and returns what happened, whatever it was.
pub fn podman_output(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run podman (apt-get install podman; .ci/services.sh does): {e}"))
}

/// The image under test, or `None` when the test is skipped (see [`super::service`]).
pub fn image() -> Option<Image> {
    super::service("KBO_TEST_IMAGE").map(|name| Image { name })
}

/// An image in podman's storage.
pub struct Image {
    /// Its name (`kafka-backup-operator:<version>`).
    pub name: String,
}

impl Image {
    /// The image's configuration (`Config` of `podman image inspect`): User, Entrypoint, Cmd, Env,
    /// ExposedPorts, Labels.
    pub fn config(&self) -> Value {
        let inspect: Value = serde_json::from_str(&podman(&["image", "inspect", &self.name])).unwrap();
        inspect[0]["Config"].clone()
    }

    /// The value of `name` in the image's environment.
    pub fn env(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.config()["Env"]
            .as_array()?
            .iter()
            .find_map(|e| e.as_str()?.strip_prefix(&prefix).map(str::to_owned))
    }

    /// `podman run --detach` of the image with `options` (before the image) and `args` (after it),
    /// labelled for clean-up; removed on drop.
    pub fn run(&self, options: &[&str], args: &[&str]) -> Container {
        let label = format!(
            "{TEST_LABEL}={}",
            std::env::var("KBO_TEST_RUN_ID").unwrap_or_else(|_| "local".to_owned())
        );
        let mut command = vec!["run", "--detach", "--label", &label];
        command.extend_from_slice(options);
        command.push(&self.name);
        command.extend_from_slice(args);
        let id = podman(&command).trim().to_owned();
        Container { id }
    }
}

/// A container started by a test; removed (killed if running) on drop.
pub struct Container {
    /// Its id.
    pub id: String,
}

impl Container {
    /// `.State.<field>` of `podman inspect`.
    pub fn state(&self, field: &str) -> String {
        podman(&[
            "inspect",
            "--format",
            &format!("{{{{.State.{field}}}}}"),
            &self.id,
        ])
        .trim()
        .to_owned()
    }

    /// Whether the container still runs.
    pub fn running(&self) -> bool {
        self.state("Running") == "true"
    }

    /// Its output so far (stdout and stderr).
    pub fn logs(&self) -> String {
        let output = podman_output(&["logs", &self.id]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// `podman exec` of `args` in the container, as the image's user.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut command = vec!["exec", &self.id];
        command.extend_from_slice(args);
        podman_output(&command)
    }

    /// Copies `path` (a directory) of the container into `dest` on this machine.
    pub fn copy_out(&self, path: &str, dest: &Path) {
        podman(&["cp", &format!("{}:{path}", self.id), &dest.display().to_string()]);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_output(&["rm", "--force", "--time", "0", &self.id]);
    }
}
