// tc_pe_subword: one processing element of the subword array: a 4-bit weight and a shift bit.
//
// Every cycle:   psum_out <= psum_in + ((a_in[lane] * weight) << (shift ? W_BITS : 0))
//                a_out    <= a_in,  a_valid_out <= a_valid_in
// An int8 weight is split into two signed 4-bit subwords (low, and high with the shift bit set), each in
// its own slot; the multiplier is A_BITS x W_BITS (8 x 4) and the shift recomposes the high subword.
// The accumulation is ACC_BITS two's complement and wraps on overflow. While `load` is high the weight,
// shift bit and lane index shift one PE down the column.
//
// Parameters:
//   LANES     G, activations on the group bus
//   A_BITS    activation bits (8)
//   W_BITS    subword bits (4); the shift is by W_BITS
//   ACC_BITS  partial-sum bits (32)
//   LANE_BITS lane-index bits: $clog2(LANES), at least 1
module tc_pe_subword #(
    parameter LANES = 8,
    parameter A_BITS = 8,
    parameter W_BITS = 4,
    parameter ACC_BITS = 32,
    parameter LANE_BITS = (LANES > 1) ? $clog2(LANES) : 1
) (
    input  wire                           clk,
    input  wire                           rst,
    input  wire                           load,
    input  wire        [W_BITS-1:0]       w_in,
    input  wire                           shift_in,
    input  wire        [LANE_BITS-1:0]    lane_in,
    output wire        [W_BITS-1:0]       w_out,
    output wire                           shift_out,
    output wire        [LANE_BITS-1:0]    lane_out,
    input  wire        [LANES*A_BITS-1:0] a_in,
    input  wire                           a_valid_in,
    output reg         [LANES*A_BITS-1:0] a_out,
    output reg                            a_valid_out,
    input  wire signed [ACC_BITS-1:0]     psum_in,
    output reg  signed [ACC_BITS-1:0]     psum_out
);
    reg [W_BITS-1:0]    weight;
    reg                 shift;
    reg [LANE_BITS-1:0] lane;

    wire signed [A_BITS-1:0]          a_sel   = a_in[lane*A_BITS +: A_BITS];  // the G:1 multiplexer
    wire signed [A_BITS+W_BITS-1:0]   product = a_sel * $signed(weight);
    wire signed [A_BITS+2*W_BITS-1:0] shifted = shift ? product <<< W_BITS : product;

    assign w_out     = weight;
    assign shift_out = shift;
    assign lane_out  = lane;

    always @(posedge clk) begin
        if (load) begin
            weight <= w_in;
            shift  <= shift_in;
            lane   <= lane_in;
        end
        a_out    <= a_in;
        psum_out <= psum_in + shifted;  // shifted sign-extends to ACC_BITS
        if (rst)
            a_valid_out <= 1'b0;
        else
            a_valid_out <= a_valid_in;
    end
endmodule
