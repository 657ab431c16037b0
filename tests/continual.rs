//! Continual learning on the real Split-MNIST tasks, through the CLI.

mod common;
use common::{TempDir, by_data, eqprop, mnist, temp_dir};

/// Runs `eqprop continual` with `args` on the first two tasks, seed 2; returns the accuracy
/// CSV's rows (after task 1, after task 2) as numbers, and the output folder.
///
/// On the full files (about 2,100 training images per task) one epoch per task of the default
/// `best` preset. (At its high rates, seed 1's one-epoch fine-tuning of task 2 collapses to
/// one class, 50%; with 5 epochs per task it does not.) On the committed sample (213 and 192
/// images) five epochs per task at the paper's rates, 0.1 and 0.05: at the `best` preset's
/// rates fine-tuning on so few images collapses to one class at 3, 4 or 6 epochs per task,
/// while the paper's rates pass every bound here at 3 to 10 epochs per task.
fn two_tasks(name: &str, args: &[&str]) -> (Vec<Vec<f64>>, TempDir) {
    let dir = temp_dir(name);
    let learning = by_data(
        &["--epochs-per-task", "5", "--lr", "0.1,0.05"][..],
        &["--epochs-per-task", "1"][..],
    );
    let out = eqprop()
        .args(["continual", "--tasks", "2", "--seed", "2"])
        .args(learning)
        .arg("--out")
        .arg(&dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(dir.join("accuracy.csv")).unwrap();
    let rows = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect();
    (rows, dir)
}

#[test]
fn fine_tuning_forgets_and_real_replay_remembers() {
    let (none, dir) = two_tasks("none", &["--replay", "none"]);
    assert_eq!(none.len(), 2, "one row per learned task");
    assert!(none[0][0] > 95.0, "task 1 learned: {:?}", none[0]);
    assert!(none[1][1] > 90.0, "task 2 learned: {:?}", none[1]);
    assert!(
        none[1][0] < 50.0,
        "class-IL fine-tuning forgets task 1: {:?}",
        none[1]
    );
    for file in ["accuracy.svg", "summary.json"] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let svg = std::fs::read_to_string(dir.join("accuracy.svg")).unwrap();
    assert!(svg.contains("after 2-3"), "the heat map labels its rows");
    let (real, _) = two_tasks("real", &["--replay", "real", "--replay-per-class", "200"]);
    assert!(
        real[1][0] > 90.0,
        "stored examples keep task 1: {:?}",
        real[1]
    );
}

/// Dream replay keeps task 1 without a single stored image of it (dreams decoded from the
/// latent prior, the default; measured on the full files, 1 epoch per task: 97.5%, 83.9%
/// dreaming from noise, 1% for fine-tuning; on the committed sample: 96.2%, task 2 88.8%), and
/// writes the dreams it replayed.
#[test]
fn dream_replay_remembers_without_stored_images() {
    let (dreams, dir) = two_tasks(
        "dreams",
        &["--replay", "dreams", "--replay-per-class", "300"],
    );
    assert!(dreams[1][0] > 90.0, "task 1 after task 2: {:?}", dreams[1]);
    assert!(dreams[1][1] > 85.0, "task 2 learned: {:?}", dreams[1]);
    assert!(dir.join("dreams-before-task-2.png").exists());
}

/// The task scenario trains one head per task and asks within the task: plain fine-tuning then
/// keeps most of task 1 (measured: 89% against 0% in the class scenario on the full files, 98%
/// against 4% on the committed sample);
/// unseen tasks are guessed among their two classes. The domain scenario trains two shared
/// outputs.
#[test]
fn task_and_domain_scenarios_ask_easier_questions() {
    let (class, _) = two_tasks("class", &["--replay", "none"]);
    let (task, _) = two_tasks("task", &["--replay", "none", "--scenario", "task"]);
    assert!(task[1][0] > 80.0, "task 1 within its head: {:?}", task[1]);
    assert!(
        class[1][0] < 50.0,
        "task 1 among all classes: {:?}",
        class[1]
    );
    assert!(task[1][1] > 90.0, "{:?}", task[1]);
    assert!(task[0][2] > 20.0 && task[0][2] < 80.0, "{:?}", task[0]);
    let (domain, dir) = two_tasks("domain", &["--replay", "none", "--scenario", "domain"]);
    assert!(domain[1][1] > 90.0, "{:?}", domain[1]);
    let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        summary["hyperparams"]["layers"],
        serde_json::json!([784, 500, 2])
    );
}

#[test]
fn too_few_outputs_for_the_classes_is_a_clear_error() {
    let dir = temp_dir("few-outputs");
    let out = eqprop()
        .args(["continual", "--replay", "none", "--layers", "784,20,5"])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs 10 output units"), "{err}");
}

/// Dream replay keeps each task's dreams from right after it was learned: only the task just
/// learned is dreamed before the next one (2 classes x 100 dreams); `--redream` dreams every old
/// class again (4 x 100 before task 3).
#[test]
fn kept_dreams_dream_only_the_task_just_learned() {
    for (flags, before_task_3) in [(&[][..], 200), (&["--redream"][..], 400)] {
        let dir = temp_dir(&format!("kept-dreams-{before_task_3}"));
        let out = eqprop()
            .args([
                "continual",
                "--tasks",
                "3",
                "--epochs-per-task",
                "1",
                "--seed",
                "2",
            ])
            .args(["--replay", "dreams", "--replay-per-class", "100"])
            .args(flags)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("task 2: 200 dreams"), "{flags:?}: {stderr}");
        assert!(
            stderr.contains(&format!("task 3: {before_task_3} dreams")),
            "{flags:?}: {stderr}"
        );
        let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
        let kept = format!("\"keep_dreams\":{}", flags.is_empty());
        assert!(summary.replace(' ', "").contains(&kept), "{summary}");
        // Kept dreams come from the prior, re-dreaming dreams from noise; both with clean pixels.
        let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
        let noise = summary["pixel_noise"].as_f64().unwrap();
        let (expected_noise, components) = if flags.is_empty() {
            (0.0, 10)
        } else {
            (0.0, 0)
        };
        assert!((noise - expected_noise).abs() < 1e-6, "{flags:?}: {noise}");
        assert_eq!(summary["prior_components"], components, "{flags:?}");
    }
}

/// Class-scenario dream replay dreams from the latent prior by default, with clean real pixels
/// and no generative training, and says so in its summary; dreams from noise train
/// generatively and noise the real pixels; the prior makes kept dreams only, so asking for it
/// with `--redream` is a clear error; the last stage's confusion matrix is written.
#[test]
fn class_dreams_come_from_the_latent_prior() {
    let (_, dir) = two_tasks(
        "prior",
        &["--replay", "dreams", "--replay-per-class", "100"],
    );
    let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["prior_components"], 10);
    assert_eq!(summary["pixel_noise"].as_f64(), Some(0.0));
    assert_eq!(summary["dimming"].as_f64(), Some(1.0));
    assert!(summary["hyperparams"]["generative"].is_null(), "{summary}");
    let (_, from_noise) = two_tasks(
        "prior-none",
        &["--replay-per-class", "100", "--prior-components", "0"],
    );
    let summary = std::fs::read_to_string(from_noise.join("summary.json")).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!((summary["pixel_noise"].as_f64().unwrap() - 0.08).abs() < 1e-6);
    assert!(
        summary["hyperparams"]["generative"].is_object(),
        "{summary}"
    );
    let confusion = std::fs::read_to_string(dir.join("confusion.csv")).unwrap();
    let rows: Vec<&str> = confusion.lines().collect();
    assert_eq!(
        rows.len(),
        11,
        "a header and one row per class: {confusion}"
    );
    let counted: usize = rows[1..]
        .iter()
        .flat_map(|r| r.split(',').skip(1))
        .map(|v| v.parse::<usize>().unwrap())
        .sum();
    let test_images = mnist(eqprop::data::Split::Test).len();
    assert_eq!(counted, test_images, "every test image once");
    let redream = temp_dir("prior-redream");
    let out = eqprop()
        .args(["continual", "--redream", "--prior-components", "5", "--out"])
        .arg(&redream)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("latent prior are kept dreams"), "{err}");
}
