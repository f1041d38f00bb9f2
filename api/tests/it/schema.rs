//! `docs/schema.graphql` is the schema clients code against: it must be exactly what the
//! code serves. After changing the schema on purpose, regenerate the file with
//! `OPENGUILD_UPDATE_SCHEMA=1 cargo nextest run -p openguild-api schema`.

#[test]
fn the_exported_schema_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema.graphql");
    let sdl = openguild_api::gql::sdl();
    if std::env::var_os("OPENGUILD_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != sdl {
        let first = on_disk.lines().zip(sdl.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "docs/schema.graphql differs from the code at line {} (file: {:?}, code: {:?}); \
             regenerate it with OPENGUILD_UPDATE_SCHEMA=1 cargo nextest run -p openguild-api schema",
            first + 1,
            on_disk.lines().nth(first),
            sdl.lines().nth(first)
        );
    }
}
