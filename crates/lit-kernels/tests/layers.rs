//! lit's batch norm, adaptive pooling and residual block against PyTorch, in training and
//! evaluation: outputs, gradients and running statistics within 1e-5 relative in f32.
//!
//! The references are the repository's `tests/fixtures/layers.json`, written by
//! `tests/fixtures/make_layer_fixtures.py`
//! (PyTorch, in float64 from float32 inputs).

use std::collections::HashMap;

use candle::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use lit_kernels::nn::{
    adaptive_avg_pool2d, basic_block, batch_norm, BatchNorm, BatchNormConfig, Dropout,
};
use serde_json::Value;

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/layers.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("layers.json")).expect("json")
}

fn nums(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn dims(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("shape")
        .iter()
        .map(|x| x.as_u64().expect("dim") as usize)
        .collect()
}

fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    Tensor::from_vec(nums(v), shape, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Within 1e-5 relative, with an absolute floor of 1e-5 of the largest reference value (for
/// elements that cancel to near zero).
fn close(actual: &[f32], expected: &Value, what: &str) {
    let expected = nums(expected);
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        let tol = 1e-5 * e.abs() + 1e-5 * scale + 1e-7;
        assert!(
            (a - e).abs() <= tol,
            "{what}[{i}]: got {a}, PyTorch {e} (tolerance {tol})"
        );
    }
}

fn varmap_with(
    state: &serde_json::Map<String, Value>,
    shapes: impl Fn(&str) -> Vec<usize>,
) -> VarMap {
    let vm = VarMap::new();
    {
        let mut data = vm.data().lock().unwrap();
        for (name, v) in state {
            let t = tensor(v, &shapes(name));
            data.insert(name.clone(), Var::from_tensor(&t).unwrap());
        }
    }
    vm
}

fn get(vm: &VarMap, name: &str) -> Tensor {
    vm.data().lock().unwrap()[name].as_tensor().clone()
}

fn check_bn_case(name: &str, case: &Value) {
    let shape = dims(&case["shape"]);
    let c = shape[1];
    let train = case["train"].as_bool().unwrap();
    let relu = case["relu"].as_bool().unwrap();
    let vm = varmap_with(case["init"].as_object().unwrap(), |_| vec![c]);
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let cfg = BatchNormConfig {
        momentum: case["momentum"].as_f64(),
        ..Default::default()
    };
    let bn: BatchNorm = batch_norm(c, cfg, vb).unwrap();
    let inputs = case["inputs"].as_array().unwrap();
    for x in &inputs[..inputs.len() - 1] {
        bn.forward_t(&tensor(x, &shape), train).unwrap();
    }
    let x = Var::from_tensor(&tensor(inputs.last().unwrap(), &shape)).unwrap();
    let residual = case
        .get("residual")
        .map(|r| Var::from_tensor(&tensor(r, &shape)).unwrap());
    let y = match (&residual, relu) {
        (Some(r), _) => bn.forward_add_relu_t(x.as_tensor(), r.as_tensor(), train),
        (None, true) => bn.forward_relu_t(x.as_tensor(), train),
        (None, false) => bn.forward_t(x.as_tensor(), train),
    }
    .unwrap();
    close(&values(&y), &case["output"], &format!("{name} output"));
    let gy = tensor(&case["grad_output"], &shape);
    let grads = (y * gy).unwrap().sum_all().unwrap().backward().unwrap();
    let grad = |t: &Tensor| values(grads.get(t).expect("a gradient"));
    close(
        &grad(x.as_tensor()),
        &case["grad_input"],
        &format!("{name} grad input"),
    );
    close(
        &grad(bn.weight()),
        &case["grad_weight"],
        &format!("{name} grad weight"),
    );
    close(
        &grad(bn.bias()),
        &case["grad_bias"],
        &format!("{name} grad bias"),
    );
    if let Some(r) = &residual {
        close(
            &grad(r.as_tensor()),
            &case["grad_residual"],
            &format!("{name} grad residual"),
        );
    }
    // The buffers the layer updated are the varmap's, which checkpoints save.
    close(
        &values(&get(&vm, "running_mean")),
        &case["running_mean"],
        &format!("{name} running mean"),
    );
    close(
        &values(&get(&vm, "running_var")),
        &case["running_var"],
        &format!("{name} running var"),
    );
    let tracked = get(&vm, "num_batches_tracked");
    assert_eq!(
        tracked.dtype(),
        DType::I64,
        "{name}: num_batches_tracked is int64"
    );
    assert_eq!(
        tracked.to_scalar::<i64>().unwrap(),
        case["num_batches_tracked"].as_i64().unwrap(),
        "{name}: num_batches_tracked"
    );
}

#[test]
fn batch_norm_matches_pytorch_in_training_and_evaluation() {
    let f = fixtures();
    let cases = f["batch_norm"].as_object().unwrap();
    assert!(cases.len() >= 10);
    for (name, case) in cases {
        check_bn_case(name, case);
    }
}

#[test]
fn batch_norm_off_the_kernel_path_matches_pytorch() {
    // f64 inputs take candle's ops (the path GPUs use); the same references hold.
    let f = fixtures();
    for name in [
        "bn2d_train",
        "bn2d_eval",
        "bn1d_train",
        "bn2d_train_cumulative",
    ] {
        let case = &f["batch_norm"][name];
        let shape = dims(&case["shape"]);
        let c = shape[1];
        let train = case["train"].as_bool().unwrap();
        let vm = varmap_with(case["init"].as_object().unwrap(), |_| vec![c]);
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        let cfg = BatchNormConfig {
            momentum: case["momentum"].as_f64(),
            ..Default::default()
        };
        let bn = batch_norm(c, cfg, vb).unwrap();
        let mut y = None;
        for x in case["inputs"].as_array().unwrap() {
            let x = tensor(x, &shape).to_dtype(DType::F64).unwrap();
            y = Some(bn.forward_t(&x, train).unwrap());
        }
        close(
            &values(&y.unwrap()),
            &case["output"],
            &format!("{name} output (candle)"),
        );
        close(
            &values(bn.running_mean()),
            &case["running_mean"],
            &format!("{name} mean (candle)"),
        );
        close(
            &values(bn.running_var()),
            &case["running_var"],
            &format!("{name} var (candle)"),
        );
    }
}

#[test]
fn adaptive_avg_pool_matches_pytorch() {
    let f = fixtures();
    for (name, case) in f["adaptive_avg_pool2d"].as_object().unwrap() {
        let out = dims(&case["out"]);
        let x = Var::from_tensor(&tensor(&case["input"], &dims(&case["shape"]))).unwrap();
        let y = adaptive_avg_pool2d(x.as_tensor(), (out[0], out[1])).unwrap();
        assert_eq!(y.dims(), dims(&case["output_shape"]), "{name}");
        close(&values(&y), &case["output"], name);
        let gy = tensor(&case["grad_output"], y.dims());
        let grads = (y * gy).unwrap().sum_all().unwrap().backward().unwrap();
        close(
            &values(grads.get(x.as_tensor()).unwrap()),
            &case["grad_input"],
            name,
        );
    }
}

#[test]
fn basic_block_matches_pytorch() {
    let f = fixtures();
    for (name, case) in f["basic_block"].as_object().unwrap() {
        let shapes = case["shapes"].as_object().unwrap();
        let vm = varmap_with(case["state"].as_object().unwrap(), |n| dims(&shapes[n]));
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let (cin, cout) = (
            case["cin"].as_u64().unwrap(),
            case["cout"].as_u64().unwrap(),
        );
        let stride = case["stride"].as_u64().unwrap() as usize;
        let block = basic_block(cin as usize, cout as usize, stride, vb).unwrap();
        let train = case["train"].as_bool().unwrap();
        let x = Var::from_tensor(&tensor(&case["input"], &dims(&case["input_shape"]))).unwrap();
        let y = block.forward_t(x.as_tensor(), train).unwrap();
        close(&values(&y), &case["output"], &format!("{name} output"));
        let gy = tensor(&case["grad_output"], y.dims());
        let grads = (y * gy).unwrap().sum_all().unwrap().backward().unwrap();
        close(
            &values(grads.get(x.as_tensor()).unwrap()),
            &case["grad_input"],
            &format!("{name} grad input"),
        );
        for (param, expected) in case["grads"].as_object().unwrap() {
            let g = grads.get(&get(&vm, param)).map(values).expect(param);
            close(&g, expected, &format!("{name} grad {param}"));
        }
        for (buffer, expected) in case["after"].as_object().unwrap() {
            let t = get(&vm, buffer);
            if buffer.ends_with("tracked") {
                assert_eq!(
                    t.to_scalar::<i64>().unwrap(),
                    nums(expected)[0] as i64,
                    "{name} {buffer}"
                );
            } else {
                close(&values(&t), expected, &format!("{name} {buffer}"));
            }
        }
    }
}

#[test]
fn basic_block_off_the_kernel_path_matches_pytorch() {
    // f64 takes candle's convolution and batch norm one after the other (the path GPUs use).
    let f = fixtures();
    for (name, case) in f["basic_block"].as_object().unwrap() {
        let shapes = case["shapes"].as_object().unwrap();
        let vm = varmap_with(case["state"].as_object().unwrap(), |n| dims(&shapes[n]));
        let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
        let (cin, cout) = (
            case["cin"].as_u64().unwrap(),
            case["cout"].as_u64().unwrap(),
        );
        let stride = case["stride"].as_u64().unwrap() as usize;
        let block = basic_block(cin as usize, cout as usize, stride, vb).unwrap();
        let x = tensor(&case["input"], &dims(&case["input_shape"]))
            .to_dtype(DType::F64)
            .unwrap();
        let y = block
            .forward_t(&x, case["train"].as_bool().unwrap())
            .unwrap();
        close(
            &values(&y),
            &case["output"],
            &format!("{name} output (candle)"),
        );
    }
}

fn dropout_output(train: bool, step: u64) -> Vec<f32> {
    lit_base::set_step(Some((7, &[0, step, 0])));
    let d = Dropout::new(0.25, "drop").unwrap();
    let x = Tensor::ones((64, 64), DType::F32, &Device::Cpu).unwrap();
    let y = values(&d.forward_t(&x, train).unwrap());
    lit_base::set_step(None);
    y
}

#[test]
fn dropout_scales_kept_elements_and_follows_the_step() {
    let y = dropout_output(true, 1);
    let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / y.len() as f64;
    assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
    assert!(y
        .iter()
        .all(|v| *v == 0.0 || (*v - 1.0 / 0.75).abs() < 1e-6));
    assert_eq!(
        y,
        dropout_output(true, 1),
        "the same step draws the same mask"
    );
    assert_ne!(
        y,
        dropout_output(true, 2),
        "another step draws another mask"
    );
    assert!(
        dropout_output(false, 1).iter().all(|v| *v == 1.0),
        "identity in evaluation"
    );
    assert!(Dropout::new(1.5, "x").is_err());
}

#[test]
fn batch_norm_names_bad_inputs() {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let bn = batch_norm(3, BatchNormConfig::default(), vb).unwrap();
    let wrong = Tensor::zeros((2, 4, 3, 3), DType::F32, &Device::Cpu).unwrap();
    let err = bn.forward_t(&wrong, true).unwrap_err().to_string();
    assert!(
        err.contains("(N, 3, ...)") && err.contains("[2, 4, 3, 3]"),
        "{err}"
    );
    let single = Tensor::zeros((1, 3), DType::F32, &Device::Cpu).unwrap();
    let err = bn.forward_t(&single, true).unwrap_err().to_string();
    assert!(err.contains("more than 1 value per channel"), "{err}");
    // Evaluation takes a single example.
    assert!(bn.forward_t(&single, false).is_ok());
    let names: HashMap<String, DType> = vm
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.dtype()))
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(names["num_batches_tracked"], DType::I64);
}
