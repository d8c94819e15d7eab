//! lit-data on the real MNIST and Fashion-MNIST files (skipped loudly without them, required in CI).
// Helpers outside #[test] functions panic on failure too, as tests do.
#![allow(clippy::unwrap_used)]

mod image_folder;
mod table;

use std::path::PathBuf;
use std::sync::Arc;

use lit_data::mnist::{self, Flavor};
use lit_data::{DataLoader, DataLoaderConfig, Dataset};
use lit_testutil::{data_root, in_ci, require};

fn counts(labels: &[u8]) -> Vec<usize> {
    let mut c = vec![0; 10];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

#[test]
fn real_mnist_has_the_published_counts_and_mean() {
    let Some(root) = data_root() else { return };
    let train = mnist::load_split(Flavor::Mnist, std::slice::from_ref(&root), true).unwrap();
    let test = mnist::load_split(Flavor::Mnist, &[root], false).unwrap();
    assert_eq!((train.n, train.rows, train.cols), (60_000, 28, 28));
    assert_eq!(
        counts(&train.labels),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        counts(&test.labels),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    let mean =
        train.images.iter().map(|&p| f64::from(p)).sum::<f64>() / train.images.len() as f64 / 255.0;
    assert!((mean - 0.1307).abs() < 1e-4, "{mean}");
    // Normalised with the same statistics, the training set has mean 0 and std 1.
    let ds = mnist::to_dataset(&train, 0.1307, 0.3081, &candle::Device::Cpu).unwrap();
    // Stored as u8 pixels (a quarter of f32's memory); batches come out normalised f32.
    assert_eq!(ds.inputs().dtype(), candle::DType::U8);
    let all: Vec<usize> = (0..ds.len()).collect();
    let x = ds.get_batch(&all).unwrap().input.flatten_all().unwrap();
    assert_eq!(x.dtype(), candle::DType::F32);
    let m = x.mean_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(m.abs() < 1e-3, "{m}");
    let loader = DataLoader::new(
        Arc::new(ds),
        DataLoaderConfig {
            batch_size: 64,
            shuffle: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(loader.len(), 938);
    let first = loader.iter(0).next().unwrap().unwrap();
    assert_eq!(first.input.dims(), [64, 1, 28, 28]);
}

#[test]
fn fashion_mnist_from_the_debian_package_reads_gzipped() {
    let dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    let dir = if in_ci() {
        Some(dir)
    } else {
        require(dir, "Fashion-MNIST (apt-get install dataset-fashion-mnist)")
    };
    let Some(_) = dir else { return };
    let train = mnist::load_split(Flavor::FashionMnist, &[], true).unwrap();
    let test = mnist::load_split(Flavor::FashionMnist, &[], false).unwrap();
    assert_eq!((train.n, test.n), (60_000, 10_000));
    assert_eq!(counts(&train.labels), [6000; 10]);
    let ds = mnist::to_dataset(&test, 0.2860, 0.3530, &candle::Device::Cpu).unwrap();
    assert_eq!(ds.len(), 10_000);
}
