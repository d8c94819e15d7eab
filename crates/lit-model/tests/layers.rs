//! lit's layers through lit-model's loss: off the fast path (f64, as GPUs run) and in a half
//! type, against the f32 kernels.

use candle::{Device, Tensor, Var};
use lit_testutil::{assert_tensor_close as close, random_tensor as random};

#[test]
fn layers_off_the_fast_path_match_the_kernels() {
    // f64 takes the path GPUs take (candle's ops and lit's reduction max-pool); its values and
    // gradients must equal the f32 kernels', max-pool included (candle's own would scale each
    // gradient by 1/k²).
    use candle::DType;
    use candle_nn::Conv2dConfig;
    use lit_model::nn::{max_pool2d, Conv2d, Linear};
    let run = |dtype: DType| {
        let to = |t: Tensor| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap();
        let x = to(random(&[2, 3, 9, 7], 41));
        let (w, b) = (to(random(&[4, 3, 3, 3], 42)), to(random(&[4], 43)));
        let (lw, lb) = (to(random(&[5, 4 * 4 * 3], 44)), to(random(&[5], 45)));
        let conv = Conv2d::new(
            w.as_tensor().clone(),
            Some(b.as_tensor().clone()),
            Conv2dConfig {
                padding: 1,
                ..Default::default()
            },
        );
        let fc = Linear::new(lw.as_tensor().clone(), Some(lb.as_tensor().clone()));
        let fused = conv.forward_relu_pool(x.as_tensor(), 2).unwrap();
        let pooled = max_pool2d(&conv.forward_relu(x.as_tensor()).unwrap(), 2).unwrap();
        let y = fc
            .forward_relu(&(fused + pooled).unwrap().flatten_from(1).unwrap())
            .unwrap();
        let target = Tensor::new(&[1u32, 3], &Device::Cpu).unwrap();
        let loss = lit_model::loss::cross_entropy(&y, &target).unwrap();
        let grads = loss.backward().unwrap();
        let f32s = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let mut out = vec![f32s(&y)];
        for v in [&x, &w, &b, &lw, &lb] {
            out.push(f32s(grads.get(v).unwrap()));
        }
        out
    };
    let (fast, generic) = (run(DType::F32), run(DType::F64));
    for (i, (a, b)) in fast.iter().zip(&generic).enumerate() {
        close(
            a,
            b,
            ["output", "grad x", "grad w", "grad b", "grad lw", "grad lb"][i],
        );
    }
}

#[test]
fn layers_compute_in_their_inputs_half_type_with_f32_parameters() {
    // Mixed precision: bf16 and f16 inputs with f32 parameters give outputs of the input's type
    // and f32 parameter gradients, within the half type's rounding of the f32 results.
    use candle::DType;
    use candle::Module;
    use candle_nn::Conv2dConfig;
    use lit_model::nn::{Conv2d, Linear};
    let run = |dtype: DType| {
        let x = random(&[2, 3, 8, 8], 51).to_dtype(dtype).unwrap();
        let (w, b) = (
            Var::from_tensor(&random(&[4, 3, 3, 3], 52)).unwrap(),
            Var::from_tensor(&random(&[4], 53)).unwrap(),
        );
        let lw = Var::from_tensor(&random(&[5, 4 * 4 * 4], 54)).unwrap();
        let lb = Var::from_tensor(&random(&[5], 55)).unwrap();
        let conv = Conv2d::new(
            w.as_tensor().clone(),
            Some(b.as_tensor().clone()),
            Conv2dConfig {
                padding: 1,
                ..Default::default()
            },
        );
        let fc = Linear::new(lw.as_tensor().clone(), Some(lb.as_tensor().clone()));
        let h = conv.forward_relu_pool(&x, 2).unwrap();
        assert_eq!(h.dtype(), dtype, "the convolution's output type");
        let y = fc.forward(&h.flatten_from(1).unwrap()).unwrap();
        assert_eq!(y.dtype(), dtype, "the linear layer's output type");
        let y = y.to_dtype(DType::F32).unwrap();
        let target = Tensor::new(&[1u32, 3], &Device::Cpu).unwrap();
        let grads = lit_model::loss::cross_entropy(&y, &target)
            .unwrap()
            .backward()
            .unwrap();
        let mut out = vec![y];
        for v in [&w, &b, &lw, &lb] {
            let g = grads.get(v).unwrap();
            assert_eq!(g.dtype(), DType::F32, "a parameter's gradient stays f32");
            out.push(g.clone());
        }
        out
    };
    let full = run(DType::F32);
    for (dtype, tol) in [(DType::BF16, 0.05), (DType::F16, 0.01)] {
        for (i, (a, b)) in run(dtype).iter().zip(&full).enumerate() {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
            let worst = a
                .iter()
                .zip(&b)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst <= tol * scale,
                "{dtype:?} {}: off by {worst}, scale {scale}",
                ["output", "grad w", "grad b", "grad lw", "grad lb"][i]
            );
        }
    }
}
