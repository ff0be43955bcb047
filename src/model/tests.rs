use super::*;

fn image(channels: usize, height: usize, width: usize) -> ImageShape {
    ImageShape {
        channels,
        height,
        width,
    }
}

const MNIST: ImageShape = ImageShape {
    channels: 1,
    height: 28,
    width: 28,
};
const CIFAR: ImageShape = ImageShape {
    channels: 3,
    height: 32,
    width: 32,
};

#[test]
fn mlp_layout_is_pytorch_order_and_padded() {
    let m = Model::mlp(&[5, 3, 2]).unwrap();
    assert_eq!(m.n_params(), 5 * 3 + 3 + 3 * 2 + 2);
    assert_eq!(m.stride(), 64);
    let l: Vec<DenseLayer> = m
        .nodes()
        .iter()
        .map(|n| match n.layer {
            Layer::Dense(l) => l,
            _ => panic!("an MLP is dense"),
        })
        .collect();
    assert_eq!((l[0].w_off, l[0].b_off, l[0].relu), (0, 15, true));
    assert_eq!((l[1].w_off, l[1].b_off, l[1].relu), (18, 24, false));
    let t = m.tensors();
    assert_eq!(t.iter().map(|t| t.len).sum::<usize>(), m.n_params());
    assert_eq!(m.to_string(), "mlp:5-3-2 (26 parameters)");
    assert_eq!(m.widest(), 5);
    // The same model from its spec, and a mismatched input.
    assert_eq!(Model::parse("mlp:5-3-2", flat(5), 10).unwrap(), m);
    // An MLP's input is its first width (the trainer checks it against the data).
    assert_eq!(Model::parse("mlp:5-3-2", MNIST, 10).unwrap().input_dim(), 5);
}

#[test]
fn bad_specs_are_typed_errors() {
    let bad = [
        ("", MNIST),
        ("mlp:10", MNIST),
        ("mlp:784-0-2", MNIST),
        ("mlp:a-b", MNIST),
        ("784--10", MNIST),
        ("relu,dense10", MNIST),
        ("pool2,dense10", MNIST),
        ("conv7x8p0,dense", image(1, 5, 5)),
        ("conv3x6,evo,dense", MNIST),
        ("conv3x8,pool9,dense", image(1, 8, 8)),
        ("cnn5", flat(784)),
        ("conv3x8,p3", MNIST),
    ];
    for (s, input) in bad {
        assert!(
            matches!(Model::parse(s, input, 10), Err(Error::ModelSpec { .. })),
            "{s}"
        );
    }
}

/// cnn5 is NGM's cganet5: 4 bias-free 3×3 convolutions with EvoNorm, 3 max pools, a dense
/// layer whose width follows the input (576 on MNIST, 1024 on CIFAR-10).
#[test]
fn cnn5_matches_cganet5() {
    for (input, flat_width) in [(MNIST, 576), (CIFAR, 1024)] {
        let m = Model::parse("cnn5", input, 10).unwrap();
        let c = input.channels;
        let convs = 9 * (c * 32 + 32 * 32 + 32 * 64 + 64 * 64);
        let norms = 2 * (32 + 32 + 64 + 64);
        assert_eq!(m.n_params(), convs + norms + flat_width * 10 + 10);
        let Layer::Dense(d) = m.nodes().last().unwrap().layer else {
            panic!("ends in a dense layer")
        };
        assert_eq!((d.in_dim, d.out_dim, d.relu), (flat_width, 10, false));
        assert_eq!(m.classes(), 10);
        let kinds: Vec<&str> = m
            .nodes()
            .iter()
            .map(|n| match n.layer {
                Layer::Conv(l) => {
                    assert_eq!((l.kernel, l.pad, l.stride, l.b_off), (3, 1, 1, None));
                    "conv"
                }
                Layer::Norm(l) => {
                    assert_eq!((l.kind, l.groups, l.eps), (NormKind::EvoS0, 8, 1e-5));
                    "evo"
                }
                Layer::Pool(l) => {
                    assert_eq!((l.kind, l.window, l.stride), (PoolKind::Max, 2, 2));
                    "pool"
                }
                Layer::Dense(_) => "dense",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds.join(","),
            "conv,evo,conv,evo,pool,conv,evo,pool,conv,evo,pool,dense"
        );
        // Tensors tile the parameters without gaps, in node order.
        let t = m.tensors();
        let mut end = 0;
        for x in &t {
            assert_eq!(x.offset, end);
            end += x.len;
        }
        assert_eq!(end, m.n_params());
    }
    // MACs on MNIST: 28²·9·(1·32 + 32·32) + 14²·9·32·64 + 7²·9·64·64 + 576·10.
    let m = Model::parse("cnn5", MNIST, 10).unwrap();
    let macs = 784 * 9 * (32 + 1024) + 196 * 9 * 2048 + 49 * 9 * 4096 + 5760;
    assert_eq!(m.forward_macs(), macs);
    assert!(m.forward_flops() > 2 * macs as u64);
    assert_eq!(m.step_flops(4, 8), 3 * 32 * m.forward_flops());
}

#[test]
fn resnet20_has_the_papers_shape() {
    let m = Model::parse("resnet20", CIFAR, 10).unwrap();
    let convs = m
        .nodes()
        .iter()
        .filter(|n| matches!(n.layer, Layer::Conv(l) if l.kernel == 3))
        .count();
    let shortcuts = m
        .nodes()
        .iter()
        .filter(|n| matches!(n.layer, Layer::Conv(l) if l.kernel == 1))
        .count();
    let adds = m
        .nodes()
        .iter()
        .filter(|n| matches!(n.layer, Layer::Add { .. }))
        .count();
    // 19 3×3 convolutions + the dense layer = 20; two projection shortcuts (16→32, 32→64).
    assert_eq!((convs, shortcuts, adds), (19, 2, 9));
    // Parameters: convolutions, 1×1 shortcuts, EvoNorm γ/β, dense.
    let conv3 = 9 * (3 * 16 + 6 * 16 * 16 + 16 * 32 + 5 * 32 * 32 + 32 * 64 + 5 * 64 * 64);
    let conv1 = 16 * 32 + 32 * 64;
    let norms = 2 * (16 * 7 + 32 * 7 + 64 * 7);
    assert_eq!(m.n_params(), conv3 + conv1 + norms + 64 * 10 + 10);
    let last = m.nodes().len() - 1;
    assert_eq!(m.nodes()[last - 1].output, image(64, 1, 1));
    // The residual sums write into their main branch, never into their shortcut.
    for (k, n) in m.nodes().iter().enumerate() {
        if let Layer::Add { other, shape } = n.layer {
            let Input::Node(main) = n.input else {
                panic!("a sum reads a node")
            };
            assert!(other < k && main < k && other != main);
            assert_eq!(m.nodes()[main].output, shape);
            assert_eq!(m.nodes()[other].output, shape);
        }
    }
    // On MNIST the same stack ends 64×7×7 before global pooling.
    let m = Model::parse("resnet20", MNIST, 10).unwrap();
    assert_eq!(m.nodes()[m.nodes().len() - 3].output, image(64, 7, 7));
}

#[test]
fn lenet5_and_custom_stacks() {
    let m = Model::parse("lenet5", MNIST, 10).unwrap();
    let n =
        (6 * 25 + 6) + (16 * 6 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10);
    assert_eq!(m.n_params(), n);
    // ReLUs between dense layers are fused; those after convolutions are their own layers.
    let relus = m
        .nodes()
        .iter()
        .filter(|n| matches!(n.layer, Layer::Relu(_)))
        .count();
    let fused = m
        .nodes()
        .iter()
        .filter(|n| matches!(n.layer, Layer::Dense(l) if l.relu))
        .count();
    assert_eq!((relus, fused), (2, 2));
    let m = Model::parse(
        "conv3x32,evo,pool2,conv3x64s2p0b,relu,gap,dense10",
        MNIST,
        7,
    )
    .unwrap();
    assert_eq!(m.classes(), 10);
    assert_eq!(m.nodes()[3].output, image(64, 6, 6));
    assert_eq!(m.nodes()[5].output, image(64, 1, 1));
    let m = Model::parse("conv3x8,gn2,relu,avgpool2s1,dense", image(2, 5, 5), 3).unwrap();
    assert_eq!(m.classes(), 3);
    assert_eq!(m.nodes()[3].output, image(8, 4, 4));
    assert!(m.describe_layers().contains("groupnorm (2 groups)"));
}

#[test]
fn init_is_seeded_bounded_and_identical_on_request() {
    let m = Model::mlp(&[4, 3, 2]).unwrap();
    let a = m.init(3, 7, true);
    let b = m.init(3, 7, false);
    let s = m.stride();
    assert_eq!(a[..s], a[s..2 * s]);
    assert_ne!(b[..s], b[s..2 * s]);
    assert_eq!(a[..s], b[..s], "agent 0 uses stream 0 in both modes");
    assert_eq!(a, m.init(3, 7, true));
    assert!(a[..12].iter().all(|v| v.abs() <= 0.5) && a[12..15].iter().any(|&v| v != 0.0));
    assert!(a[m.n_params()..s].iter().all(|&v| v == 0.0));
}

#[test]
fn conv_init_is_he_normal_and_norms_start_at_identity() {
    let m = Model::parse("conv3x64,evo,conv3x64b,dense", image(8, 6, 6), 10).unwrap();
    let p = m.init(1, 3, true);
    let Layer::Conv(c) = m.nodes()[2].layer else {
        panic!()
    };
    let w = &p[c.w_off..][..c.weight_len()];
    let var = w.iter().map(|v| (v * v) as f64).sum::<f64>() / w.len() as f64;
    let want = 2.0 / (9.0 * 64.0);
    assert!((var / want - 1.0).abs() < 0.05, "variance {var} vs {want}");
    let bound = 1.0 / (64.0f32 * 9.0).sqrt();
    assert!(p[c.b_off.unwrap()..][..64].iter().all(|v| v.abs() <= bound));
    let Layer::Norm(n) = m.nodes()[1].layer else {
        panic!()
    };
    assert!(p[n.gamma_off..][..64].iter().all(|&v| v == 1.0));
    assert!(p[n.beta_off..][..64].iter().all(|&v| v == 0.0));
}

/// The parameter counts the README's model table states.
#[test]
fn readme_parameter_counts() {
    let count = |spec, input| Model::parse(spec, input, 10).unwrap().n_params();
    assert_eq!(count("mlp:784-128-10", MNIST), 101_770);
    assert_eq!(
        (count("cnn5", MNIST), count("cnn5", CIFAR)),
        (70_954, 76_010)
    );
    assert_eq!(
        (count("resnet20", MNIST), count("resnet20", CIFAR)),
        (272_186, 272_474)
    );
    assert_eq!(
        (count("lenet5", MNIST), count("lenet5", CIFAR)),
        (61_706, 83_126)
    );
}
