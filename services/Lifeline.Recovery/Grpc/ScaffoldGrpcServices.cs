using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Grpc;

// TEMPORARY scaffold while these areas are being built in parallel; each is replaced by its own file.
