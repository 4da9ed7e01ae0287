//! The kprobe backend's link-time facts: which function each hook probes
//! under a kernel's names, and in which register each argument arrives,
//! resolved from the record's BTF prototypes, and refused when they do not
//! fit what the core reads.

mod common;

use kmlink_core_module::{fnarg_key, fnarg_size_key, function_key, CORE_OBJECT};
use kmlink_linker::{link_with, LinkError, Options};
use kmlink_linker::{Plan, SlotValue};

fn slot(plan: &Plan, name: &str) -> u64 {
    match plan.slots.get(&format!("kml_slot_{name}")) {
        Some(SlotValue::Const(v)) => *v,
        other => panic!("slot {name}: {other:?}"),
    }
}

#[test]
fn each_kernel_gets_its_own_names_and_argument_positions() {
    let m = common::manifest();
    // 6.1: __kmalloc(size, flags); kmalloc_trace(s, gfpflags, size).
    let p = Plan::resolve(&m, &common::record("6.1.0-47-amd64")).expect("6.1 resolves");
    assert_eq!(slot(&p, "kp_kmalloc"), 2, "__kmalloc is the 2nd candidate");
    assert_eq!(slot(&p, "kp_kmalloc_size"), 1);
    assert_eq!(slot(&p, "kp_kmalloc_cache"), 3, "kmalloc_trace");
    assert_eq!(slot(&p, "kp_kmalloc_cache_size"), 3);
    assert_eq!(slot(&p, "kp_kmalloc_cache_gfp"), 2);
    assert_eq!(slot(&p, "kp_pages"), 3, "__alloc_pages");
    assert_eq!(slot(&p, "kp_pages_free"), 2, "free_unref_page");
    // 6.12: __kmalloc_node_noprof(size, b, flags, node): the bucket
    // argument moved flags to the third register.
    let p = Plan::resolve(&m, &common::record("6.12.107+deb13-amd64")).expect("6.12 resolves");
    assert_eq!(slot(&p, "kp_kmalloc"), 1, "__kmalloc_noprof");
    assert_eq!(slot(&p, "kp_kmalloc_node_gfp"), 3);
    assert_eq!(slot(&p, "kp_kmalloc_caller_caller"), 5);
    assert_eq!(slot(&p, "kp_kmalloc_cache"), 1, "__kmalloc_cache_noprof");
    // 7.3: frozen pages are the innermost allocator and free path.
    let p = Plan::resolve(&m, &common::record("7.3.4+deb13-amd64")).expect("7.3 resolves");
    assert_eq!(slot(&p, "kp_pages"), 1, "__alloc_frozen_pages_noprof");
    assert_eq!(slot(&p, "kp_pages_free"), 1, "free_frozen_pages");
}

#[test]
fn a_kernel_without_a_candidate_leaves_that_hook_off() {
    let m = common::manifest();
    let mut r = common::record("6.1.0-47-amd64");
    r.layouts.remove(&function_key("kmalloc_large"));
    let p = Plan::resolve(&m, &r).expect("optional hook");
    assert_eq!(slot(&p, "kp_kmalloc_large"), 0);
    assert_eq!(slot(&p, "kp_kmalloc_large_size"), 0);
}

#[test]
fn an_argument_of_another_size_is_refused() {
    let m = common::manifest();
    let mut r = common::record("6.1.0-47-amd64");
    r.layouts.insert(fnarg_size_key("__kmalloc", "size"), 4);
    let e = Plan::resolve(&m, &r).expect_err("size mismatch");
    let text = e.to_string();
    assert!(
        matches!(e, LinkError::FunctionMismatch { .. })
            && text.contains("__kmalloc")
            && text.contains("size is 4 bytes, the core reads 8"),
        "{text}"
    );
}

#[test]
fn an_argument_passed_on_the_stack_is_refused() {
    let m = common::manifest();
    let mut r = common::record("6.1.0-47-amd64");
    r.layouts.insert(fnarg_key("kfree", "object"), 7);
    let text = Plan::resolve(&m, &r).expect_err("stack").to_string();
    assert!(
        text.contains("kfree") && text.contains("argument 7"),
        "{text}"
    );
}

#[test]
fn a_missing_argument_of_a_present_function_is_refused() {
    let m = common::manifest();
    let mut r = common::record("6.1.0-47-amd64");
    r.layouts.remove(&fnarg_key("kmem_cache_free", "x"));
    let text = Plan::resolve(&m, &r).expect_err("missing").to_string();
    assert!(
        text.contains("kmem_cache_free") && text.contains("no parameter named x or objp"),
        "{text}"
    );
}

#[test]
fn the_backend_option_is_written_into_the_module() {
    let m = common::manifest();
    let r = common::record("6.12.107+deb13-amd64");
    let tp = link_with(CORE_OBJECT, &m, &r, &Options::new()).expect("links");
    let kp = link_with(
        CORE_OBJECT,
        &m,
        &r,
        &Options::from([("backend".to_string(), 1)]),
    )
    .expect("links");
    assert_eq!(tp.report.options["backend"], 0);
    assert_eq!(kp.report.options["backend"], 1);
    assert_ne!(tp.ko, kp.ko);
    let read = |ko: &[u8]| -> u64 {
        use object::{Object, ObjectSection, ObjectSymbol};
        let f = object::File::parse(ko).expect("parses");
        let sym = f
            .symbols()
            .find(|s| s.name() == Ok("kml_opt_backend"))
            .expect("option symbol");
        let sec = f
            .section_by_index(sym.section_index().expect("section"))
            .expect("section");
        let data = sec.data().expect("data");
        let off = (sym.address() - sec.address()) as usize;
        u64::from_le_bytes(data[off..off + 8].try_into().expect("8 bytes"))
    };
    assert_eq!(read(&tp.ko), 0);
    assert_eq!(read(&kp.ko), 1);
    let e = link_with(
        CORE_OBJECT,
        &m,
        &r,
        &Options::from([("no_such_option".to_string(), 1)]),
    )
    .expect_err("unknown option");
    assert!(e.to_string().contains("no_such_option"), "{e}");
}
