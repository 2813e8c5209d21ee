//! The contract, `agentregistry.v1`: its messages and client stubs, generated from `proto/`, and
//! the codec both ends use (the server's stubs are generated over these same messages).

#![allow(clippy::all, missing_docs)]

pub mod agentregistry {
    pub mod v1 {
        tonic::include_proto!("agentregistry.v1");
    }
}

pub use agentregistry::v1::*;

/// The codec every service and client of the contract is generated with: prost's encoding
/// with 1 KiB buffers instead of tonic's 8 KiB. tonic allocates one encode and one decode
/// buffer per call up front and keeps them for the life of a stream; heartbeat messages are
/// tens of bytes, so at 100 000 open streams the default buffers alone held 1.6 GB. The buffers
/// still grow for a larger message (a Discover page), as before.
pub struct Codec<T, U>(std::marker::PhantomData<fn() -> (T, U)>);

/// Per-call buffer size, and tonic's default threshold for yielding while encoding a stream.
fn buffers() -> tonic::codec::BufferSettings {
    tonic::codec::BufferSettings::new(1024, 32 * 1024)
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = tonic_prost::ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(buffers())
    }
}
