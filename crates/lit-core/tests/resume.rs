//! Checkpoints that resume exactly, loading checks, and atomic writes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use candle::{DType, Device, Tensor};
use candle_nn::VarMap;
use lit_core::checkpoint::{self, CheckpointMeta, CheckpointRequest};
use lit_core::{
    rundir, Accelerator, Callback, Result as CoreResult, Trainer, TrainerConfig, TrainerState,
};

use crate::common::{datamodule, hparams, Recorded};

/// Saves `e<epoch>.safetensors` at every epoch end and `s<step>.safetensors` at chosen steps.
struct Saver {
    dir: PathBuf,
    steps: Vec<u64>,
}

impl Callback for Saver {
    fn on_train_batch_end(&mut self, s: &mut TrainerState, _: usize) -> CoreResult<()> {
        if self.steps.contains(&s.global_step()) {
            let path = self.dir.join(format!("s{}.safetensors", s.global_step()));
            s.request_checkpoint(CheckpointRequest {
                path,
                weights_only: false,
                monitor: None,
                higher_is_better: false,
                remove: vec![],
            });
        }
        Ok(())
    }
    fn on_train_epoch_end(&mut self, s: &mut TrainerState) -> CoreResult<()> {
        let mut paths = vec![self.dir.join(format!("e{}.safetensors", s.epoch()))];
        // The run's own `last`, as ModelCheckpoint(save_last) keeps it.
        paths.extend(
            s.log_dir()
                .as_ref()
                .map(|d| d.join("checkpoints/last.safetensors")),
        );
        for path in paths {
            s.request_checkpoint(CheckpointRequest {
                path,
                weights_only: false,
                monitor: None,
                higher_is_better: false,
                remove: vec![],
            });
        }
        Ok(())
    }
}

fn hp() -> lit_data::HParams {
    hparams(&[
        ("optimizer", "adamw".into()),
        ("lr", 0.01.into()),
        ("lr_scheduler", "cosine".into()),
        ("lr_interval", "step".into()),
        ("lr_decay_steps", 25.into()),
        ("num_workers", 2.into()),
        ("seed", 11.into()),
    ])
}

fn fit(dir: &Path, epochs: usize, steps: Vec<u64>, resume: Option<&Path>) {
    std::fs::create_dir_all(dir).unwrap();
    let hp = hp();
    let cfg = TrainerConfig {
        max_epochs: epochs,
        accelerator: Accelerator::Cpu,
        default_root_dir: dir.join("logs"),
        run_name: "linear4".into(),
        ..Default::default()
    };
    let mut t = Trainer::new(cfg)
        .unwrap()
        .with_hparams(hp.clone())
        .with_callback(Saver {
            dir: dir.to_path_buf(),
            steps,
        });
    if let Some(p) = resume {
        t = t.with_ckpt_path(p);
    }
    t.fit(
        &mut Recorded::new(&hp, Rc::new(RefCell::new(Vec::new()))),
        &mut datamodule(&hp),
    )
    .unwrap();
}

fn assert_same_state(a: &Path, b: &Path) {
    let (a, b) = (checkpoint::load(a).unwrap(), checkpoint::load(b).unwrap());
    assert_eq!(a.meta.global_step, b.meta.global_step);
    assert_eq!(a.meta.scheduler, b.meta.scheduler);
    assert_eq!(a.meta.optimizer, b.meta.optimizer);
    let bits = |t: &Tensor| {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(a.weights.len(), b.weights.len());
    for (k, t) in &a.weights {
        assert_eq!(bits(t), bits(&b.weights[k]), "weight {k}");
    }
    assert!(!a.optimizer.is_empty());
    assert_eq!(
        a.optimizer.keys().collect::<Vec<_>>(),
        b.optimizer.keys().collect::<Vec<_>>()
    );
    for (k, t) in &a.optimizer {
        assert_eq!(bits(t), bits(&b.optimizer[k]), "optimizer {k}");
    }
}

#[test]
fn two_epochs_plus_a_resumed_one_equal_three_straight_bit_for_bit() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    fit(&a, 3, vec![], None);
    fit(&b, 2, vec![], None);
    // Resume from `last`, found in the latest run directory as --ckpt-path last finds it.
    let last = checkpoint::resolve("last", &b.join("logs"), "linear4").unwrap();
    assert!(
        last.ends_with("version_0/checkpoints/last.safetensors"),
        "{}",
        last.display()
    );
    fit(&c, 3, vec![], Some(&last));
    assert!(
        !c.join("e1.safetensors").exists(),
        "the resumed run re-ran an epoch"
    );
    assert_same_state(&a.join("e2.safetensors"), &c.join("e2.safetensors"));
}

#[test]
fn a_mid_epoch_checkpoint_resumes_at_the_next_batch() {
    let root = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        root.path().join("a"),
        root.path().join("b"),
        root.path().join("c"),
    );
    fit(&a, 3, vec![], None);
    // 10 steps per epoch: step 13 is batch 3 of epoch 1.
    fit(&b, 2, vec![13], None);
    let meta = checkpoint::load(&b.join("s13.safetensors")).unwrap().meta;
    assert_eq!(
        (meta.resume_epoch, meta.resume_batch, meta.global_step),
        (1, 3, 13)
    );
    fit(&c, 3, vec![], Some(&b.join("s13.safetensors")));
    assert_same_state(&a.join("e1.safetensors"), &c.join("e1.safetensors"));
    assert_same_state(&a.join("e2.safetensors"), &c.join("e2.safetensors"));
}

fn varmap(shapes: &[(&str, &[usize], DType)]) -> VarMap {
    let vm = VarMap::new();
    for (name, shape, dtype) in shapes {
        vm.get(
            *shape,
            name,
            candle_nn::Init::Const(0.5),
            *dtype,
            &Device::Cpu,
        )
        .unwrap();
    }
    vm
}

fn load_error(file: &[(&str, &[usize], DType)], model: &[(&str, &[usize], DType)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    checkpoint::save(&path, &varmap(file), None, &CheckpointMeta::default()).unwrap();
    let ck = checkpoint::load(&path).unwrap();
    checkpoint::load_weights(&path, &varmap(model), &ck.weights)
        .unwrap_err()
        .to_string()
}

#[test]
fn loading_names_every_mismatch() {
    let f32_ = DType::F32;
    let e = load_error(
        &[("a.weight", &[2, 3], f32_)],
        &[("a.weight", &[2, 3], f32_), ("a.bias", &[2], f32_)],
    );
    assert!(
        e.contains("c.safetensors") && e.contains("missing keys: a.bias"),
        "{e}"
    );
    let e = load_error(
        &[("a.weight", &[2, 3], f32_), ("extra", &[1], f32_)],
        &[("a.weight", &[2, 3], f32_)],
    );
    assert!(e.contains("unexpected keys: extra"), "{e}");
    let e = load_error(
        &[("a.weight", &[3, 2], f32_)],
        &[("a.weight", &[2, 3], f32_)],
    );
    assert!(
        e.contains("a.weight: shape [3, 2] in the file, the model has [2, 3]"),
        "{e}"
    );
    let e = load_error(
        &[("a.weight", &[2, 3], DType::F64)],
        &[("a.weight", &[2, 3], f32_)],
    );
    assert!(
        e.contains("a.weight: dtype F64 in the file, the model has F32"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_safetensors_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.ckpt");
    std::fs::write(&path, b"PK\x03\x04 a pickle in a zip").unwrap();
    let e = checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("model.ckpt") && e.contains("not a safetensors file"),
        "{e}"
    );
    let e = checkpoint::read_meta(&path).unwrap_err().to_string();
    assert!(e.contains("not a safetensors file"), "{e}");
}

#[test]
fn a_checkpoint_of_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hp = hparams(&[]);
    let module = Recorded::new(&hp, Rc::new(RefCell::new(Vec::new())));
    let path = dir.path().join("other.safetensors");
    let meta = CheckpointMeta {
        model_name: Some("resnet".into()),
        ..Default::default()
    };
    checkpoint::save(&path, lit_model::LitModule::varmap(&module), None, &meta).unwrap();
    let cfg = TrainerConfig {
        accelerator: Accelerator::Cpu,
        logger: false,
        ..Default::default()
    };
    let mut t = Trainer::new(cfg)
        .unwrap()
        .with_hparams(hp.clone())
        .with_ckpt_path(&path);
    let mut module = module;
    let e = t
        .test(&mut module, &mut datamodule(&hp))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("other.safetensors")
            && e.contains("written by model 'resnet', this run builds 'linear4'"),
        "{e}"
    );
}

#[test]
fn a_crash_between_write_and_rename_leaves_the_previous_checkpoint_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.safetensors");
    let before = varmap(&[("w", &[4], DType::F32)]);
    checkpoint::save(
        &path,
        &before,
        None,
        &CheckpointMeta {
            global_step: 7,
            ..Default::default()
        },
    )
    .unwrap();
    // The next write dies after its temporary file is complete, before the rename.
    let err = rundir::write_atomic_with(&path, b"half of a new checkpoint", |tmp| {
        assert!(tmp.exists() && tmp != path);
        Err(std::io::Error::other("simulated crash"))
    });
    assert!(err.unwrap_err().to_string().contains("simulated crash"));
    // A crash would also leave its temporary file behind; it must not disturb anything.
    std::fs::write(dir.path().join(".last.safetensors.999.tmp"), b"garbage").unwrap();
    let ck = checkpoint::load(&path).unwrap();
    assert_eq!(ck.meta.global_step, 7);
    assert_eq!(ck.weights["w"].to_vec1::<f32>().unwrap(), [0.5; 4]);
    let _: HashMap<String, Tensor> = ck.weights;
}
