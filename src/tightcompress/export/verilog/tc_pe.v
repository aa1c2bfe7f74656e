// tc_pe: one processing element of the weight-stationary array, word weights.
//
// Every cycle:   psum_out <= psum_in + a_in[lane] * weight      (signed; ACC_BITS two's complement,
//                                                                 an overflow wraps, it does not saturate)
//                a_out    <= a_in,  a_valid_out <= a_valid_in      (the activation bus moves one PE right)
// While `load` is high the weight and the lane index shift one PE down the column
// (w_in -> weight -> w_out); the array loads one row per cycle. The G:1 multiplexer picks lane `lane`
// of the LANES activations of the row's group (tight, N:M, column combining); with LANES = 1 (dense)
// there is no multiplexer and the lane register is a single unused bit.
//
// Parameters:
//   LANES     G, activations on the group bus
//   A_BITS    activation bits (int8: 8)
//   W_BITS    weight bits (int8: 8)
//   ACC_BITS  partial-sum bits (int32: 32)
//   LANE_BITS lane-index bits: $clog2(LANES), at least 1
module tc_pe #(
    parameter LANES = 8,
    parameter A_BITS = 8,
    parameter W_BITS = 8,
    parameter ACC_BITS = 32,
    parameter LANE_BITS = (LANES > 1) ? $clog2(LANES) : 1
) (
    input  wire                           clk,
    input  wire                           rst,
    input  wire                           load,
    input  wire        [W_BITS-1:0]       w_in,
    input  wire        [LANE_BITS-1:0]    lane_in,
    output wire        [W_BITS-1:0]       w_out,
    output wire        [LANE_BITS-1:0]    lane_out,
    input  wire        [LANES*A_BITS-1:0] a_in,
    input  wire                           a_valid_in,
    output reg         [LANES*A_BITS-1:0] a_out,
    output reg                            a_valid_out,
    input  wire signed [ACC_BITS-1:0]     psum_in,
    output reg  signed [ACC_BITS-1:0]     psum_out
);
    reg [W_BITS-1:0]    weight;
    reg [LANE_BITS-1:0] lane;

    wire signed [A_BITS-1:0]        a_sel   = a_in[lane*A_BITS +: A_BITS];  // the G:1 multiplexer
    wire signed [A_BITS+W_BITS-1:0] product = a_sel * $signed(weight);

    assign w_out    = weight;
    assign lane_out = lane;

    always @(posedge clk) begin
        if (load) begin
            weight <= w_in;
            lane   <= lane_in;
        end
        a_out    <= a_in;
        psum_out <= psum_in + product;  // product sign-extends to ACC_BITS
        if (rst)
            a_valid_out <= 1'b0;
        else
            a_valid_out <= a_valid_in;
    end
endmodule
