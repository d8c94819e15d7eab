//! The residual block as one op against the same block as three fused ops, one after the other:
//! the same output, gradients and running statistics, to the bit (the block's backward pass adds
//! the two gradients of its input as autograd would, only without a pass of its own).

use candle::{DType, Device, ModuleT, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use lit_kernels::nn::{basic_block, batch_norm2d, conv2d_no_bias};

use crate::common::{random, values};

/// Every parameter and buffer of `vm` set to seeded values (variances positive).
fn randomise(vm: &VarMap) {
    let data = vm.data().lock().unwrap();
    let mut names: Vec<_> = data.keys().cloned().collect();
    names.sort();
    for (i, name) in names.iter().enumerate() {
        let var = &data[name];
        if var.dtype() != DType::F32 {
            continue;
        }
        let t = random(var.dims(), 1000 + i as u64);
        let t = if name.ends_with("running_var") {
            (t.abs().unwrap() + 0.5).unwrap()
        } else {
            t
        };
        var.set(&t).unwrap();
    }
}

/// A copy of `vm`'s values into a new map built by `build`.
fn same_values(vm: &VarMap, build: impl FnOnce(VarBuilder)) -> VarMap {
    let other = VarMap::new();
    build(VarBuilder::from_varmap(&other, DType::F32, &Device::Cpu));
    let src = vm.data().lock().unwrap();
    for (name, var) in other.data().lock().unwrap().iter() {
        var.set(src[name].as_tensor()).unwrap();
    }
    other
}

/// The block's layers, run as `BasicBlock` ran them before it became one op.
fn three_ops(
    x: &Tensor,
    (cin, cout, stride): (usize, usize, usize),
    vb: VarBuilder,
    train: bool,
) -> Tensor {
    let conv3 = |s| candle_nn::Conv2dConfig {
        padding: 1,
        stride: s,
        ..Default::default()
    };
    let conv1 = conv2d_no_bias(cin, cout, 3, conv3(stride), vb.pp("conv1")).unwrap();
    let bn1 = batch_norm2d(cout, vb.pp("bn1")).unwrap();
    let conv2 = conv2d_no_bias(cout, cout, 3, conv3(1), vb.pp("conv2")).unwrap();
    let bn2 = batch_norm2d(cout, vb.pp("bn2")).unwrap();
    let out = bn1.forward_conv_t(&conv1, x, train, true).unwrap();
    let shortcut = if stride != 1 || cin != cout {
        let cfg = candle_nn::Conv2dConfig {
            stride,
            ..Default::default()
        };
        let conv = conv2d_no_bias(cin, cout, 1, cfg, vb.pp("downsample.0")).unwrap();
        let bn = batch_norm2d(cout, vb.pp("downsample.1")).unwrap();
        bn.forward_conv_t(&conv, x, train, false).unwrap()
    } else {
        x.clone()
    };
    bn2.forward_conv_add_relu_t(&conv2, &out, &shortcut, train)
        .unwrap()
}

fn all_values(vm: &VarMap) -> Vec<(String, Vec<f32>)> {
    let data = vm.data().lock().unwrap();
    let mut all: Vec<_> = data
        .iter()
        .filter(|(_, v)| v.dtype() == DType::F32)
        .map(|(n, v)| (n.clone(), values(v.as_tensor())))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn one_op_block_equals_three_fused_ops() {
    for (cin, cout, stride, train, tracked) in [
        (8, 8, 1, true, true),
        (8, 16, 2, true, true),
        (8, 16, 2, false, true),
        (8, 8, 1, true, false),
    ] {
        let what =
            format!("{cin}->{cout}, stride {stride}, train {train}, input tracked {tracked}");
        let shape = (3, cin, 11, 10);
        let block_vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&block_vm, DType::F32, &Device::Cpu);
        let block = basic_block(cin, cout, stride, vb).unwrap();
        randomise(&block_vm);
        let ops_vm = same_values(&block_vm, |vb| {
            three_ops(
                &Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap(),
                (cin, cout, stride),
                vb,
                false,
            );
        });
        let x = Var::from_tensor(&random(&[3, cin, 11, 10], 5)).unwrap();
        let input = if tracked {
            x.as_tensor().clone()
        } else {
            x.as_tensor().detach()
        };
        let ours = block.forward_t(&input, train).unwrap();
        let vb = VarBuilder::from_varmap(&ops_vm, DType::F32, &Device::Cpu);
        let theirs = three_ops(&input, (cin, cout, stride), vb, train);
        assert_eq!(values(&ours), values(&theirs), "{what}: output");
        let probe = random(ours.dims(), 9);
        let backward = |t: &Tensor| (t * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let (g1, g2) = (backward(&ours), backward(&theirs));
        let input_grad = |g: &candle::backprop::GradStore| g.get(&input).map(values);
        assert_eq!(input_grad(&g1), input_grad(&g2), "{what}: input gradient");
        assert_eq!(
            input_grad(&g1).is_some(),
            tracked,
            "{what}: input gradient present"
        );
        let (mine, other) = (
            block_vm.data().lock().unwrap(),
            ops_vm.data().lock().unwrap(),
        );
        for (name, var) in mine.iter().filter(|(_, v)| v.dtype() == DType::F32) {
            let (a, b) = (g1.get(var.as_tensor()), g2.get(other[name].as_tensor()));
            let is_param = !name.contains("running");
            assert_eq!(a.is_some(), is_param, "{what}: gradient of {name} present");
            assert_eq!(a.map(values), b.map(values), "{what}: gradient of {name}");
        }
        drop((mine, other));
        assert_eq!(
            all_values(&block_vm),
            all_values(&ops_vm),
            "{what}: buffers after the step"
        );
    }
}
