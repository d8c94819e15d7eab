//! Optimizers and learning-rate schedules against `tests/fixtures/reference.json` (PyTorch 2.15,
//! float64 references; lit computes in f32, compared at a relative tolerance of 1e-5).
//!
//! The references were made by `make_fixtures.py` in the fixtures folder, for example:
//!
//! ```python
//! p = p0.clone().requires_grad_(True); opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
//! for _ in range(6):
//!     opt.zero_grad(); loss = (w * (p - target) ** 2).sum(); loss.backward(); opt.step()
//!     traj.append(p.tolist())
//! ```

use candle::{DType, Device, Tensor, Var};
use lit_optim::scheduler::{Decay, LrScheduler, Scheduled, Warmup};
use lit_optim::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use lit_testutil::{assert_close, flat, reference};
use serde_json::Value;

fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    let data: Vec<f32> = flat(v).into_iter().map(|x| x as f32).collect();
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn trajectory(r: &Value, make: impl Fn(Vec<(String, Var)>) -> Box<dyn Optimizer>) -> Vec<f64> {
    trajectory_in(DType::F32, r, make)
}

/// The optimizer's six steps with the parameter in `dtype` (f32 on the CPU takes Adam's fused
/// in-place update, other dtypes and devices its tensor arithmetic).
fn trajectory_in(
    dtype: DType,
    r: &Value,
    make: impl Fn(Vec<(String, Var)>) -> Box<dyn Optimizer>,
) -> Vec<f64> {
    let o = &r["optimizers"];
    let p = Var::from_tensor(&tensor(&o["p0"], &[2, 3]).to_dtype(dtype).unwrap()).unwrap();
    let target = tensor(&o["target"], &[2, 3]).to_dtype(dtype).unwrap();
    let w = tensor(&o["w"], &[2, 3]).to_dtype(dtype).unwrap();
    let mut opt = make(vec![("p".into(), p.clone())]);
    let mut traj = Vec::new();
    for _ in 0..6 {
        let loss = (&w * (p.as_tensor() - &target).unwrap().sqr().unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        traj.extend(
            p.as_tensor()
                .to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
        );
    }
    traj
}

fn check_optimizer(case: &str, make: impl Fn(Vec<(String, Var)>) -> Box<dyn Optimizer>) {
    let Some(r) = reference() else { return };
    let expected = flat(&r["optimizers"]["cases"][case]["trajectory"]);
    assert_close(&trajectory(&r, make), &expected, 1e-5, case);
}

fn sgd(cfg: SgdConfig) -> impl Fn(Vec<(String, Var)>) -> Box<dyn Optimizer> {
    move |p| Box::new(Sgd::new(p, cfg).unwrap())
}

fn adam(cfg: AdamConfig) -> impl Fn(Vec<(String, Var)>) -> Box<dyn Optimizer> {
    move |p| Box::new(Adam::new(p, cfg).unwrap())
}

#[test]
fn sgd_matches_torch() {
    check_optimizer(
        "sgd",
        sgd(SgdConfig {
            lr: 0.1,
            ..Default::default()
        }),
    );
}

#[test]
fn sgd_momentum_matches_torch() {
    check_optimizer(
        "sgd_momentum",
        sgd(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        }),
    );
}

#[test]
fn sgd_nesterov_weight_decay_matches_torch() {
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.01,
        ..Default::default()
    };
    check_optimizer("sgd_nesterov_wd", sgd(cfg));
}

#[test]
fn sgd_dampening_matches_torch() {
    check_optimizer(
        "sgd_dampening",
        sgd(SgdConfig {
            lr: 0.1,
            momentum: 0.8,
            dampening: 0.3,
            ..Default::default()
        }),
    );
}

#[test]
fn adam_matches_torch() {
    check_optimizer(
        "adam",
        adam(AdamConfig {
            lr: 0.01,
            ..Default::default()
        }),
    );
}

#[test]
fn adam_l2_matches_torch() {
    check_optimizer(
        "adam_l2",
        adam(AdamConfig {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        }),
    );
}

#[test]
fn adamw_matches_torch() {
    let cfg = AdamConfig {
        lr: 0.01,
        weight_decay: 0.1,
        decoupled_weight_decay: true,
        ..Default::default()
    };
    check_optimizer("adamw", adam(cfg));
}

#[test]
fn adam_amsgrad_matches_torch() {
    let cfg = AdamConfig {
        lr: 0.01,
        amsgrad: true,
        beta1: 0.8,
        beta2: 0.95,
        ..Default::default()
    };
    check_optimizer("adam_amsgrad", adam(cfg));
}

#[test]
fn adam_tensor_path_matches_torch() {
    // f64 parameters take the tensor update that other devices use.
    let Some(r) = reference() else { return };
    let base = AdamConfig {
        lr: 0.01,
        ..Default::default()
    };
    for (case, cfg) in [
        ("adam", base),
        (
            "adam_l2",
            AdamConfig {
                weight_decay: 0.1,
                ..base
            },
        ),
        (
            "adamw",
            AdamConfig {
                weight_decay: 0.1,
                decoupled_weight_decay: true,
                ..base
            },
        ),
        (
            "adam_amsgrad",
            AdamConfig {
                amsgrad: true,
                beta1: 0.8,
                beta2: 0.95,
                ..base
            },
        ),
    ] {
        let expected = flat(&r["optimizers"]["cases"][case]["trajectory"]);
        let got = trajectory_in(DType::F64, &r, adam(cfg));
        assert_close(&got, &expected, 1e-5, &format!("{case} (f64)"));
    }
}

#[test]
fn sgd_tensor_path_matches_torch() {
    // f64 parameters take the tensor update that other devices use.
    let Some(r) = reference() else { return };
    let sgd_cfg = |lr, momentum, dampening, weight_decay, nesterov| SgdConfig {
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    };
    for (case, cfg) in [
        ("sgd", sgd_cfg(0.1, 0.0, 0.0, 0.0, false)),
        ("sgd_momentum", sgd_cfg(0.1, 0.9, 0.0, 0.0, false)),
        ("sgd_nesterov_wd", sgd_cfg(0.05, 0.9, 0.0, 0.01, true)),
        ("sgd_dampening", sgd_cfg(0.1, 0.8, 0.3, 0.0, false)),
    ] {
        let expected = flat(&r["optimizers"]["cases"][case]["trajectory"]);
        let got = trajectory_in(DType::F64, &r, sgd(cfg));
        assert_close(&got, &expected, 1e-5, &format!("{case} (f64)"));
    }
}

#[test]
fn sgd_state_round_trips() {
    let cfg = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.01,
        ..Default::default()
    };
    check_round_trip(sgd(cfg), "momentum_buffer.p");
}

#[test]
fn adam_state_of_the_wrong_shape_is_an_error() {
    let p = Var::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    let q = Var::zeros((4,), DType::F32, &Device::Cpu).unwrap();
    let mut donor = Adam::new(vec![("p".into(), q.clone())], AdamConfig::default()).unwrap();
    let loss = q.as_tensor().sqr().unwrap().sum_all().unwrap();
    donor.step(&loss.backward().unwrap()).unwrap();
    let mut opt = Adam::new(vec![("p".into(), p)], AdamConfig::default()).unwrap();
    let err = opt.load_state(donor.state()).unwrap_err().to_string();
    assert!(
        err.contains(
            "optimizer state for p: moment of shape [4], but the parameter has shape [2, 3]"
        ),
        "{err}"
    );
}

/// Six steps straight equal three steps, a state save (holding `key`) into a fresh optimizer, and
/// three more, bit for bit.
fn check_round_trip(make: impl Fn(Vec<(String, Var)>) -> Box<dyn Optimizer>, key: &str) {
    let Some(r) = reference() else { return };
    let o = &r["optimizers"];
    let target = tensor(&o["target"], &[2, 3]);
    let run = |split: bool| {
        let p = Var::from_tensor(&tensor(&o["p0"], &[2, 3])).unwrap();
        let mut opt = make(vec![("p".into(), p.clone())]);
        for i in 0..6 {
            if split && i == 3 {
                let state = opt.state();
                assert!(state.tensors.contains_key(key), "{key} not saved");
                opt = make(vec![("p".into(), p.clone())]);
                opt.load_state(state).unwrap();
            }
            let loss = (p.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        p.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    assert_eq!(run(false), run(true));
}

#[test]
fn optimizer_state_round_trips() {
    let cfg = AdamConfig {
        lr: 0.01,
        amsgrad: true,
        ..Default::default()
    };
    check_round_trip(adam(cfg), "max_exp_avg_sq.p");
}

fn check_schedule(case: &str, mut s: Scheduled) {
    let Some(r) = reference() else { return };
    let expected = flat(&r["schedulers"]["cases"][case]["lrs"]);
    let mut got = vec![s.lr()];
    for _ in 1..expected.len() {
        got.push(s.step(None));
    }
    assert_close(&got, &expected, 1e-9, case);
}

#[test]
fn step_lr_matches_torch() {
    check_schedule(
        "step",
        Scheduled::new(
            0.1,
            Decay::Step {
                step_size: 5,
                gamma: 0.5,
            },
            None,
        ),
    );
}

#[test]
fn multi_step_lr_matches_torch() {
    check_schedule(
        "multi_step",
        Scheduled::new(
            0.1,
            Decay::MultiStep {
                milestones: vec![5, 10, 20],
                gamma: 0.5,
            },
            None,
        ),
    );
}

#[test]
fn cosine_matches_torch() {
    check_schedule(
        "cosine",
        Scheduled::new(
            0.1,
            Decay::Cosine {
                t_max: 10,
                eta_min: 1e-5,
            },
            None,
        ),
    );
}

#[test]
fn warmup_cosine_matches_torch() {
    let warmup = Warmup {
        steps: 5,
        start_factor: 0.01,
    };
    check_schedule(
        "warmup_cosine",
        Scheduled::new(
            0.1,
            Decay::Cosine {
                t_max: 25,
                eta_min: 1e-5,
            },
            Some(warmup),
        ),
    );
}

#[test]
fn exponential_matches_torch() {
    check_schedule(
        "exponential",
        Scheduled::new(0.1, Decay::Exponential { gamma: 0.9 }, None),
    );
}

#[test]
fn optimizer_state_never_holds_the_autograd_graph() {
    // A variable's gradient points into the forward graph; state built from it without detaching
    // chains every step's activations together and grows memory without bound.
    let p = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 3.0], &Device::Cpu).unwrap()).unwrap();
    let x = Tensor::new(&[0.5f32, 0.1, -0.3], &Device::Cpu).unwrap();
    let optimizers: Vec<Box<dyn Optimizer>> = vec![
        Box::new(
            Sgd::new(
                vec![("p".into(), p.clone())],
                SgdConfig {
                    momentum: 0.9,
                    weight_decay: 0.1,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
        Box::new(
            Adam::new(
                vec![("p".into(), p.clone())],
                AdamConfig {
                    weight_decay: 0.1,
                    amsgrad: true,
                    ..Default::default()
                },
            )
            .unwrap(),
        ),
    ];
    for mut opt in optimizers {
        for _ in 0..3 {
            let loss = (p.as_tensor() * &x)
                .unwrap()
                .relu()
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        for (name, t) in opt.state().tensors {
            assert!(
                !t.track_op(),
                "{} state {name} is still part of the autograd graph",
                opt.name()
            );
        }
    }
}

#[test]
fn rmsprop_matches_torch() {
    use lit_optim::{RmsProp, RmsPropConfig};
    let cfg = RmsPropConfig {
        lr: 0.01,
        alpha: 0.9,
        momentum: 0.5,
        ..Default::default()
    };
    check_optimizer("rmsprop", move |p| Box::new(RmsProp::new(p, cfg).unwrap()));
}

#[test]
fn param_groups_take_their_own_weight_decay_and_lr() {
    use lit_optim::{no_decay_on_biases, ParamGroup};
    // torch.optim.SGD([{"params": [w]}, {"params": [b], "weight_decay": 0, "lr": 0.05}], lr=0.1, weight_decay=0.5)
    // with loss = w + b (gradients 1): w = 2 - 0.1 * (1 + 0.5 * 2) = 1.8, b = 3 - 0.05 * 1 = 2.95.
    let w = Var::from_tensor(&Tensor::new(&[[2.0f32]], &Device::Cpu).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::new(&[3.0f32], &Device::Cpu).unwrap()).unwrap();
    let groups = no_decay_on_biases(vec![
        ("fc.weight".into(), w.clone()),
        ("fc.bias".into(), b.clone()),
    ]);
    assert_eq!(groups[1].params[0].0, "fc.bias");
    let groups = vec![
        groups[0].clone(),
        ParamGroup {
            lr_scale: 0.5,
            ..groups[1].clone()
        },
    ];
    let mut opt = Sgd::with_groups(
        groups,
        SgdConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        },
    )
    .unwrap();
    let loss = (w.as_tensor().sum_all().unwrap() + b.as_tensor().sum_all().unwrap()).unwrap();
    opt.step(&loss.backward().unwrap()).unwrap();
    let w_after = w
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0];
    assert!((w_after - 1.8).abs() < 1e-6, "{w_after}");
    let b_after = b.as_tensor().to_vec1::<f32>().unwrap()[0];
    assert!((b_after - 2.95).abs() < 1e-6, "{b_after}");
}

#[test]
fn one_cycle_matches_torch() {
    use lit_optim::scheduler::OneCycle;
    let Some(r) = reference() else { return };
    let expected = flat(&r["schedulers"]["cases"]["one_cycle"]["lrs"]);
    let mut s = OneCycle::new(0.1, 31);
    let mut got = vec![s.lr()];
    for _ in 1..expected.len() {
        got.push(s.step(None));
    }
    assert_close(&got, &expected, 1e-9, "one_cycle");
}

#[test]
fn reduce_on_plateau_matches_torch() {
    use lit_optim::scheduler::{Mode, ReduceOnPlateau};
    let Some(r) = reference() else { return };
    let case = &r["schedulers"]["cases"]["plateau"];
    let expected = flat(&case["lrs"]);
    let metrics = flat(&case["metrics"]);
    let mut s = ReduceOnPlateau::new(0.1, Mode::Min);
    s.factor = 0.5;
    s.patience = 2;
    let mut got = vec![s.lr()];
    for m in metrics {
        got.push(s.step(Some(m)));
    }
    assert_close(&got, &expected, 1e-12, "plateau");
}
